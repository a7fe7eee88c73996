package azuritetest

import (
	"os/exec"
	"syscall"
)

// sysProcAttr puts Azurite in its own process group, so that Stop reaches
// anything it spawns, and asks the kernel to kill it if the test binary
// dies without calling Stop (a panic, a -timeout, a ^C).
//
// Pdeathsig fires when the thread that started the child exits, not the
// process; Go keeps its threads unless a goroutine exits while locked to
// one, which nothing here does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// kill kills the process group; an error means it is already gone.
func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
