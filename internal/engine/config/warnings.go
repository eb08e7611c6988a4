package config

import (
	"fmt"
	"os/user"
	"strconv"
)

// Warnings are settings that are valid but probably wrong, with their
// place (check-config prints them; serve logs them at start and reload).
func (c *Config) Warnings() Errors { return c.warnings }

// findWarnings finds the warnings of a config read from file (placed by
// line while the YAML tree is kept).
func (c *Config) findWarnings(file string) Errors {
	var ws Errors
	if rt := c.Milter.ReadTimeout; rt > 0 && rt < MTACommandTimeout {
		ws = append(ws, Error{File: file, Line: c.lineOf("milter.read_timeout"), Path: "milter.read_timeout",
			Msg: fmt.Sprintf("%s is shorter than Postfix's smtpd_timeout (%s by default): an SMTP client that pauses longer between commands loses its milter connection and gets milter_default_action (451 4.7.1); use at least %s", rt, MTACommandTimeout, MTACommandTimeout)})
	}
	if c.root != nil && child(c.root, "milter") != nil && child(child(c.root, "milter"), "allowed_peers") != nil {
		for i, n := range c.Milter.AllowedPeers {
			if _, err := strconv.ParseUint(n, 10, 32); err == nil {
				continue
			}
			if _, err := user.Lookup(n); err != nil {
				p := fmt.Sprintf("milter.allowed_peers[%d]", i)
				ws = append(ws, Error{File: file, Line: c.lineOf(p), Path: p,
					Msg: fmt.Sprintf("%q is no user on this host: it allows nobody", n)})
			}
		}
	}
	return ws
}
