package config

// AdminConfig configures the admin HTTP server.
type AdminConfig struct{}

// EventsConfig configures the decision record.
type EventsConfig struct{}

// ReportsConfig configures postmaster reports and their mailing.
type ReportsConfig struct{}

func (a *AdminConfig) defaults()               {}
func (a *AdminConfig) validate(v *validator)   {}
func (e *EventsConfig) defaults()              {}
func (e *EventsConfig) validate(v *validator)  {}
func (r *ReportsConfig) defaults()             {}
func (r *ReportsConfig) validate(v *validator) {}
