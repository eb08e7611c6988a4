package config

// The authentication keys of a customer entry. The customers: section is
// core, so they are decoded here; the auth family (internal/checks/auth)
// validates them (its CustomerSection) and reads the key files.

// CustomerAuth is a customer's own authentication settings. Its keys sit
// directly in the customer's entry.
type CustomerAuth struct {
	// RequireAlignment, when set, overrides auth.dmarc.require_alignment.
	RequireAlignment *bool `yaml:"require_alignment"`
	// DKIM are the customer's signing keys, one per domain.
	DKIM []DKIMKey `yaml:"dkim"`
}

// DKIMKey is one signing key of a customer.
type DKIMKey struct {
	// Domain is the signing domain (d=); mail whose From domain is this
	// domain or one of its subdomains is signed with it.
	Domain string `yaml:"domain"`
	// Selector is the key's selector (s=): its public key is published at
	// SELECTOR._domainkey.DOMAIN.
	Selector string `yaml:"selector"`
	// KeyFile is a PEM private key, RSA of at least 2048 bits or Ed25519,
	// in PKCS#1 or PKCS#8 form, readable by its owner only.
	KeyFile string `yaml:"key_file"`
	// Rotated takes the domain's keys from the rotation key directory
	// (auth.dkim.rotation.keys_dir/DOMAIN, written by "aupguard dkim
	// rotate") instead of Selector and KeyFile: the gateway signs with the
	// newest key whose DNS record it has seen published.
	Rotated bool `yaml:"rotated"`
}
