package standing

import "github.com/aupguard/aupguard/internal/engine/policy"

// resellerOf is the customer's reseller id ("" for the provider's own
// customers).
func resellerOf(c *policy.Customer) string { return c.Reseller }
