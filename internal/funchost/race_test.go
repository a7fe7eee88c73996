//go:build race

package funchost_test

// raceEnabled shrinks the bodies the streaming tests push: the race
// detector makes every byte cost ~50 times more.
const raceEnabled = true
