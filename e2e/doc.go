// Package e2e holds the end-to-end tests: mail sent through a real, private
// Postfix instance whose milter is the real gateway, relayed to an SMTP sink.
package e2e
