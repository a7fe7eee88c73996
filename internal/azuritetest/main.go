package azuritetest

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

var (
	shared *Azurite
	// skipReason is set by Main when Azurite is missing and not required.
	skipReason string
)

// Main is a TestMain helper: it starts Azurite (in memory), runs m, stops
// Azurite and returns the exit code:
//
//	func TestMain(m *testing.M) { os.Exit(azuritetest.Main(m)) }
//
// When Azurite is not installed it prints
// "azuritetest: Azurite not installed: run `npm ci` in <root>"; then, if the
// environment variable CI is set or KVAUDIT_REQUIRE_AZURITE=1, it returns 1
// without running the tests, and otherwise it runs them with Require
// skipping those that need Azurite. Any other start failure returns 1.
func Main(m *testing.M) int {
	az, err := Start(Options{})
	if errors.Is(err, ErrNotInstalled) {
		fmt.Fprintln(os.Stderr, err)
		if os.Getenv("CI") != "" || os.Getenv("KVAUDIT_REQUIRE_AZURITE") == "1" {
			fmt.Fprintln(os.Stderr, "azuritetest: Azurite is required here (CI or KVAUDIT_REQUIRE_AZURITE=1 is set)")
			return 1
		}
		skipReason = err.Error()
		return m.Run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	shared = az
	code := m.Run()
	if err := az.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Shared returns the Azurite Main started, or nil when Main did not start
// one (Azurite missing, or Main not used).
func Shared() *Azurite { return shared }

// Require returns the Azurite Main started. When Azurite is not installed
// it skips the test with the message naming what to run; when Main was not
// used in TestMain it fails the test, saying so.
func Require(t testing.TB) *Azurite {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if shared == nil {
		t.Fatal("azuritetest: no Azurite: call azuritetest.Main from TestMain")
	}
	return shared
}
