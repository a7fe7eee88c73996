//go:build !unix

package azuritetest

import (
	"os/exec"
	"syscall"
)

// Without process groups, only the process itself is stopped, and killed
// at once: there is no SIGTERM to save a persistent location with.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
