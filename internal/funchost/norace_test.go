//go:build !race

package funchost_test

const raceEnabled = false
