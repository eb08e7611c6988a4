package config

// OptOutConfig configures suppression lists, unsubscribe links and complaints.
type OptOutConfig struct{}

// BulkConfig configures the bulk-mail rules.
type BulkConfig struct{}

// CustomerOptOut is a customer's own opt-out and bulk settings.
type CustomerOptOut struct{}

func (o *OptOutConfig) defaults()                         {}
func (o *OptOutConfig) validate(v *validator)             {}
func (b *BulkConfig) defaults()                           {}
func (b *BulkConfig) validate(v *validator)               {}
func (c *CustomerOptOut) validate(v *validator, p string) {}
