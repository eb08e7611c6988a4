package config

// HeadersConfig configures the header and sender-identity checks (headers/).
type HeadersConfig struct{}

func (h *HeadersConfig) defaults()             {}
func (h *HeadersConfig) validate(v *validator) {}
