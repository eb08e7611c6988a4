package config

// DNSConfig configures the caching resolver shared by all checks.
type DNSConfig struct{}

// AuthConfig configures SPF, DKIM and DMARC checks and DKIM signing.
type AuthConfig struct{}

// CustomerAuth is a customer's own authentication settings.
type CustomerAuth struct{}

func (d *DNSConfig) defaults()                          {}
func (d *DNSConfig) validate(v *validator)              {}
func (a *AuthConfig) defaults()                         {}
func (a *AuthConfig) validate(v *validator)             {}
func (a *CustomerAuth) validate(v *validator, p string) {}
