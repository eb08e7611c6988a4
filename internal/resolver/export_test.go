package resolver

// FreshSockets makes c use a socket per query for every server, as it does
// for remote ones, so that tests on loopback can see that behaviour.
func FreshSockets(c *Cache) { c.pools = nil }

// IdleSockets is the number of idle pooled sockets to srv.
func IdleSockets(c *Cache, srv string) int {
	if p := c.pools[srv]; p != nil {
		return p.idleCount()
	}
	return 0
}
