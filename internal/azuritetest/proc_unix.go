//go:build unix && !linux

package azuritetest

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts Azurite in its own process group, so that Stop reaches
// anything it spawns. Without Linux's Pdeathsig, a test binary that dies
// without calling Stop leaves Azurite running.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// kill kills the process group; an error means it is already gone.
func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
