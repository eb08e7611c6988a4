package testenv

import "syscall"

// childAttr makes a helper process die with the test binary, so that a
// crashed or killed test does not leave servers running.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
