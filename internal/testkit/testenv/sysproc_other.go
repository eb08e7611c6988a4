//go:build !linux

package testenv

import "syscall"

// childAttr returns nil: parent-death signals are a Linux feature.
func childAttr() *syscall.SysProcAttr { return nil }
