package azuritetest

// Kill kills Azurite with SIGKILL, as a crash or an OOM kill would: unlike
// Stop it gives Azurite no chance to save a persistent location, so writes
// it acknowledged since its last save (tables are saved every 5 s) are
// lost. Restart then starts it again on the same ports. Kill removes the
// log file; it is safe to call when Azurite is stopped.
func (a *Azurite) Kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.proc
	if p == nil {
		return
	}
	a.proc = nil
	kill(p.cmd)
	<-p.exited
	a.removeLogLocked()
}
