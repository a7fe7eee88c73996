package query

import (
	"errors"
	"strings"
	"testing"
)

// A detections request's cost is bounded by vaults × days: past
// MaxDetectionVaultDays it is refused, saying what fits.
func TestCheckVaultDays(t *testing.T) {
	for _, tt := range []struct {
		vaults, days int
		oneVault     bool
		says         string // "" when allowed
	}{
		{1, 32, true, ""},
		{31, 32, false, ""},  // 992: a 31-day window over 31 vaults
		{500, 2, false, ""},  // the last 24 hours of 500 vaults
		{1000, 1, false, ""}, // one UTC day of 1,000 vaults
		{40, 31, false, "40 vaults × 31 days = 1240 vault-day partitions, more than one request may (1000): give vault, or a window of at most 24 days"},
		{501, 2, false, "give vault"},    // no window fits: a day touches 2 days
		{10000, 32, false, "give vault"}, // the case
		{1, 1001, true, "a window of at most 999 days"},
	} {
		err := checkVaultDays(tt.vaults, tt.days, tt.oneVault)
		var pe *ParamError
		switch {
		case tt.says == "" && err != nil:
			t.Errorf("%d vaults × %d days: %v, want it allowed", tt.vaults, tt.days, err)
		case tt.says != "" && (!errors.As(err, &pe) || !strings.Contains(pe.Error(), tt.says)):
			t.Errorf("%d vaults × %d days: %v, want a ParamError saying %q", tt.vaults, tt.days, err, tt.says)
		case tt.says != "" && strings.HasSuffix(pe.Error(), "give vault") && tt.oneVault:
			t.Errorf("%d days of one vault: told to give a vault", tt.days)
		}
	}
}
