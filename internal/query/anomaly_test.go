package query

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var anomalyStart = at("2026-10-01T00:00:00Z") // a Thursday

// dailySeries is an hourSeries of days whose requests all fall in hour 12
// (as the Azurite fixture below writes them), per day count.
func dailySeries(counts []float64, callers map[string][]float64) *hourSeries {
	s := newHourSeries(anomalyStart, len(counts)*24, nil)
	for d, n := range counts {
		s.total[d*24+12] = n
	}
	for c, v := range callers {
		s.callers[c] = make([]float64, len(counts)*24)
		for d, n := range v {
			s.callers[c][d*24+12] = n
		}
	}
	return s
}

func repeat(n int, f func(d int) float64) []float64 {
	out := make([]float64, n)
	for d := range out {
		out[d] = f(d)
	}
	return out
}

// weekend says whether day d of the series (from a Thursday) is Saturday
// or Sunday.
func weekend(d int) bool { w := (d + 4) % 7; return w == 6 || w == 0 }

// noise is a fixed, deterministic wobble of ±10%, so that "steady" is not
// a constant a MAD of 0 would make trivial.
func noise(d int) float64 {
	return []float64{1, 1.04, 0.93, 1.08, 0.97, 1.02, 0.9, 1.1, 0.95, 1.05}[d%10]
}

func TestScoreSeries(t *testing.T) {
	const days = 28
	planted := 24 // the day with 20× the traffic
	steady := func(d int) float64 { return math.Round(100 * noise(d)) }
	cases := []struct {
		name  string
		s     *hourSeries
		want  []string // "caller|series|start" of the flagged units in the last 7 days
		about string
	}{
		{"steady", dailySeries(repeat(days, steady), nil), nil, "a steady series is quiet"},
		{"planted 20x day", dailySeries(repeat(days, func(d int) float64 {
			if d == planted {
				return 20 * steady(d)
			}
			return steady(d)
		}), nil), []string{"|day|2026-10-25", "|hour|2026-10-25T12"}, "the planted day, and its hour, alone"},
		{"weekly periodic", dailySeries(repeat(days, func(d int) float64 {
			if weekend(d) {
				return math.Round(5 * noise(d))
			}
			return steady(d)
		}), nil), nil, "weekdays busy, weekends quiet: Mondays are not anomalies"},
		{"weekly spikes", dailySeries(repeat(days, func(d int) float64 {
			if weekend(d) {
				return 20 * steady(d)
			}
			return steady(d)
		}), nil), nil, "a weekend batch job twenty times the weekdays is its own baseline"},
		{"sparse", dailySeries(repeat(days, func(d int) float64 {
			return []float64{0, 0, 1, 0, 3, 0, 0, 2, 0, 0, 0, 4, 0, 1}[d%14]
		}), nil), nil, "a few requests on a quiet vault are noise, under the minimum baseline"},
		{"sparse burst", dailySeries(repeat(days, func(d int) float64 {
			if d == planted {
				return 60
			}
			return []float64{0, 0, 1, 0, 3, 0, 0, 2, 0, 0, 0, 4, 0, 1}[d%14]
		}), nil), []string{"|day|2026-10-25", "|hour|2026-10-25T12"}, "but 60 on a vault that sees 0–4 a day is far above"},
		{"caller", dailySeries(repeat(days, func(d int) float64 { return 1000 }), map[string][]float64{
			"quiet-app": repeat(days, func(d int) float64 {
				if d == planted {
					return 200
				}
				return 10
			}),
			"steady-app": repeat(days, func(d int) float64 { return 990 }),
		}), []string{"quiet-app|day|2026-10-25", "quiet-app|hour|2026-10-25T12"},
			"a caller 20× its own baseline inside a vault whose total hardly moves"},
		{"new vault", dailySeries(repeat(days, func(d int) float64 {
			if d < days-5 {
				return 0
			}
			return 500
		}), nil), nil, "five days of history are too few to judge"},
	}
	w := Window{From: anomalyStart.Add((days - 7) * 24 * time.Hour), To: anomalyStart.Add(days * 24 * time.Hour)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := scoreSeries(c.s, "kv", w, AnomalyParams{}.withDefaults())
			var got []string
			for _, f := range fs {
				start := f.Anomaly.Start[:10]
				if f.Anomaly.Series == SeriesHour {
					start = f.Anomaly.Start[:13]
				}
				got = append(got, f.Caller+"|"+f.Anomaly.Series+"|"+start)
				if f.Kind != KindAccessAnomaly || f.Vault != "kv" || f.Anomaly.Score < DefaultAnomalyScore {
					t.Errorf("%+v %+v", f, *f.Anomaly)
				}
			}
			if sortJoin(got) != sortJoin(c.want) {
				t.Fatalf("%s: flagged %v, want %v", c.about, got, c.want)
			}
		})
	}
}

func TestScoreAnomalyFloors(t *testing.T) {
	flat := repeat(14, func(int) float64 { return 100 })
	s := scoreAnomaly(120, flat, nil, AnomalyParams{}.withDefaults())
	// MAD 0: the Poisson scale √100 = 10 stands in, so +20% is score 2.
	if s.scale != 10 || s.score != 2 || s.flagged {
		t.Fatalf("%+v", s)
	}
	zeros := make([]float64, 14)
	if s := scoreAnomaly(11, zeros, nil, AnomalyParams{}.withDefaults()); s.flagged || s.baseline != 5 {
		t.Fatalf("11 over a zero history: %+v (the floor baseline is 5)", s)
	}
	if s := scoreAnomaly(13, zeros, nil, AnomalyParams{}.withDefaults()); !s.flagged {
		t.Fatalf("13 over a zero history: %+v", s)
	}
	if s := scoreAnomaly(300, flat, []float64{300, 280}, AnomalyParams{}.withDefaults()); s.flagged || s.baseline != 280 {
		t.Fatalf("the same weekday twice as high: %+v", s)
	}
	if s := scoreAnomaly(300, flat, []float64{300, 100}, AnomalyParams{}.withDefaults()); !s.flagged {
		t.Fatalf("one high weekday is not a season: %+v", s)
	}
}

// Through the index: 22 days of three vaults in Azurite, read back by
// Detections as the API and the alerts do.
func TestAccessAnomalyDetections(t *testing.T) {
	e := newEnv(t)
	const days = 22
	last := anomalyStart.Add((days - 1) * 24 * time.Hour)
	var evs []ev
	add := func(vault, caller string, d, n int) {
		for i := 0; i < n; i++ {
			evs = append(evs, ev{t: anomalyStart.Add(time.Duration(d)*24*time.Hour + 12*time.Hour + time.Duration(i)*time.Second),
				vault: vault, oid: caller, ip: "192.0.2.1", object: "cfg"})
		}
	}
	for d := 0; d < days; d++ {
		n := int(math.Round(20 * noise(d)))
		add("steady", "app-1", d, n)
		add("planted", "app-1", d, n)
		if d == days-1 {
			add("planted", "intruder", d, 19*n)
		}
		if weekend(d) {
			add("weekly", "app-1", d, 2)
		} else {
			add("weekly", "app-1", d, n)
		}
	}
	e.load(0, evs)
	d, err := e.q.Detections(context.Background(), &DetectionsQuery{
		Window: Window{From: last, To: last.Add(24 * time.Hour)}, Threshold: 1_000_000, SlowMs: DefaultSlowMs,
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findingsOf(d, KindAccessAnomaly) {
		got = append(got, fmt.Sprintf("%s/%s/%s/%d", f.Vault, f.Caller, f.Anomaly.Series, f.Count))
		if f.Day != "2026-10-22" || f.First != "2026-10-22T00:00:00.0000000Z" && f.Anomaly.Series == SeriesDay {
			t.Errorf("%+v", f)
		}
	}
	n := int(math.Round(20 * noise(days-1)))
	want := fmt.Sprintf("planted//day/%d planted//hour/%d planted/intruder/day/%d planted/intruder/hour/%d", 20*n, 20*n, 19*n, 19*n)
	if sortJoin(got) != want {
		t.Fatalf("anomalies %v\nwant %s (steady and weekly quiet)", got, want)
	}
	if d.Summary[KindAccessAnomaly] != 4 {
		t.Fatalf("summary %v", d.Summary)
	}
	if !strings.Contains(strings.Join(d.Vaults, ","), "weekly") {
		t.Fatalf("vaults %v", d.Vaults)
	}
}
