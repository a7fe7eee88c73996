// Package faults is kvaudit's fault suite (issue 10): it runs the real
// handler binary as the Functions host does — a subprocess on a loopback
// port, invoked with the host's exact requests — against a private Azurite,
// injects one fault per case, and checks that every record written to the
// audit blobs is indexed exactly once.
//
// Faults are injected from outside the handler, so that no test-only code
// enters it: the handler reaches Azurite through loopback proxies that can
// record what storage acknowledged, delay or stall a response, cut a read,
// refuse connections, or run a hook (delete a table, kill a process) at an
// exact point of the traffic.
//
// Every case ends with the same check: after the fault, BlobTrigger and
// CatchUp are invoked until each blob's checkpoint reaches its length
// (bounded), then the Events table must hold each written correlation id
// exactly once, every event must have its ByCaller, ByIp and ByObject rows,
// and GET /api/audit/stats must total the events. A write Azurite
// acknowledged and then lost in a SIGKILL (it saves tables every 5 s) is
// reported as the emulator's loss, apart from kvaudit's own.
//
// The fast cases run in `make test`; the slow ones skip unless
// KVAUDIT_CHAOS=1, which `make chaos` sets. The package has no non-test
// code but this comment.
package faults
