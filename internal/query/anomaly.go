package query

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// The access-anomaly detection: a day or an hour far above its own
// baseline, per vault and per caller, from the per-hour counts ingest
// keeps beside each checkpoint (no event is read).
//
// Microsoft Sentinel's "Azure Key Vault access TimeSeries anomaly" rule
// builds a 14-day daily series per vault and flags a point whose
// series_decompose_anomalies score is 3 or more with a baseline above 5
// (Azure/Azure-Sentinel, Solutions/Azure Key Vault/Analytic Rules/
// TimeSeriesKeyvaultAccessAnomaly.yaml). A decomposition needs a dense
// series to fit a trend and a season; a Key Vault's series is often
// sparse (a handful of reads a day, zero on most hours), where a fitted
// model has nothing to stand on and one burst drags the fit. So kvaudit
// scores each point against robust statistics of its own history:
//
//   - history: the same unit on each of the 14 days before it (for an
//     hour, the same hour of day: daily rhythm is the strongest season in
//     access logs), only days on which the vault had been seen (a vault
//     indexed for three days has three days of history, not eleven zero
//     days); fewer than 7 such days and the point is not scored;
//   - baseline b: the median of that history (half the history would
//     have to be bursts to move it), raised to the same unit one and two
//     weeks before when both were at least as high (a weekly job is its
//     own baseline), and never below MinBaseline (default 5, Sentinel's
//     baseline threshold), so that a quiet vault does not alert on noise;
//   - scale: 1.4826 × the median absolute deviation of the history (the
//     standard deviation of normal noise, unmoved by outliers), but at
//     least √b, the noise of a count with mean b (Poisson): a perfectly
//     steady or all-zero history has a MAD of 0, and dividing by it would
//     make any wiggle infinitely anomalous;
//   - flagged when score = (x − b) / scale ≥ Score (default 3, Sentinel's)
//     and x ≥ Ratio × b (default 2): "far above", not merely unusual.
//
// The series counts every request (the counts' total), as the counts do
// not cross operation with caller; per caller, the requests counted under
// the caller (index.CallerKey). The current day or hour counts what has
// been indexed so far: a burst is flagged while it happens.

// Anomaly defaults: Sentinel's score and baseline thresholds.
const (
	DefaultAnomalyScore       = 3
	DefaultAnomalyMinBaseline = 5
	DefaultAnomalyRatio       = 2
)

const (
	anomalyHistoryDays    = 14
	anomalyMinHistoryDays = 7
	// maxAnomalyCallers bounds the callers whose own series are built for
	// one vault and window: those with the most requests among the ones
	// that could be flagged at all. A vault's own series still counts
	// every caller, so many callers can hide none of the volume.
	maxAnomalyCallers = 200
	madToSigma        = 1.4826
)

// AnomalyParams tune the access-anomaly detection; a zero field takes its
// default.
type AnomalyParams struct {
	Score       float64 // flagged at (x − baseline) / scale ≥ Score (3)
	MinBaseline float64 // baseline floor (5)
	Ratio       float64 // and x ≥ Ratio × baseline (2)
}

func (p AnomalyParams) withDefaults() AnomalyParams {
	if p.Score <= 0 {
		p.Score = DefaultAnomalyScore
	}
	if p.MinBaseline <= 0 {
		p.MinBaseline = DefaultAnomalyMinBaseline
	}
	if p.Ratio <= 0 {
		p.Ratio = DefaultAnomalyRatio
	}
	return p
}

// minFlagged is the least count that can ever be flagged: x at the floor
// baseline plus Score times the floor's Poisson noise, and Ratio times it.
func (p AnomalyParams) minFlagged() float64 {
	return math.Max(p.MinBaseline+p.Score*math.Sqrt(p.MinBaseline), p.Ratio*p.MinBaseline)
}

// Anomaly series.
const (
	SeriesDay  = "day"
	SeriesHour = "hour"
)

// AnomalyDetail says why an accessAnomaly finding was raised. The
// finding's Count is the unit's requests, First and Last the unit's
// bounds, Caller the caller whose own series it is ("" for the vault's).
type AnomalyDetail struct {
	Series   string  `json:"series"` // "day" or "hour"
	Start    string  `json:"start"`  // the unit's first instant, RFC 3339
	Baseline float64 `json:"baseline"`
	Scale    float64 `json:"scale"`
	Score    float64 `json:"score"`
}

// anomalyScore is one scored point.
type anomalyScore struct {
	baseline, scale, score float64
	flagged                bool
}

// scoreAnomaly scores x against history (the same unit on earlier days)
// and seasonal (the same unit one and two weeks before; may be shorter).
// history must hold at least anomalyMinHistoryDays values; the caller
// checks.
func scoreAnomaly(x float64, history, seasonal []float64, p AnomalyParams) anomalyScore {
	med := median(history)
	dev := make([]float64, len(history))
	for i, h := range history {
		dev[i] = math.Abs(h - med)
	}
	b := med
	if len(seasonal) == 2 {
		b = math.Max(b, math.Min(seasonal[0], seasonal[1]))
	}
	b = math.Max(b, p.MinBaseline)
	scale := math.Max(madToSigma*median(dev), math.Sqrt(b))
	s := anomalyScore{baseline: b, scale: scale, score: (x - b) / scale}
	s.flagged = s.score >= p.Score && x >= p.Ratio*b
	return s
}

// median of xs (not changed); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// hourSeries is a vault's requests per hour from start, and those of some
// callers.
type hourSeries struct {
	start   time.Time
	total   []float64
	callers map[string][]float64
}

func newHourSeries(start time.Time, hours int, callers []string) *hourSeries {
	s := &hourSeries{start: start, total: make([]float64, hours), callers: map[string][]float64{}}
	for _, c := range callers {
		s.callers[c] = make([]float64, hours)
	}
	return s
}

// add folds one day's counts of vault in.
func (s *hourSeries) add(vault string, c *index.Counts) {
	for k, h := range c.Hours {
		if k.Vault != vault {
			continue // a record of another vault in this vault's blob
		}
		t, err := time.Parse(index.HourLayout, k.Hour)
		if err != nil {
			continue
		}
		i := int(t.Sub(s.start) / time.Hour)
		if i < 0 || i >= len(s.total) {
			continue
		}
		s.total[i] += float64(h.Total)
		// Every request of a caller, whatever its class (index.ClassDims).
		for _, dim := range index.ClassDims(index.DimCaller) {
			for caller, n := range h.Dims[dim] {
				if v := s.callers[caller]; v != nil {
					v[i] += float64(n)
				}
			}
		}
	}
}

// callerSummary is what the first pass keeps of a caller: enough to pick
// the callers worth a series, O(1) each.
type callerSummary struct {
	total, maxDay, maxHour float64
}

// anomalies adds the accessAnomaly findings of dq's window, for each of
// vaults, to findings.
func (q *Querier) anomalies(ctx context.Context, dq *DetectionsQuery, vaults []string, findings map[string][]Finding) error {
	p := dq.Anomaly.withDefaults()
	var mu sync.Mutex
	return q.parallelN(ctx, len(vaults), 2, func(ctx context.Context, i int) error {
		fs, err := q.vaultAnomalies(ctx, dq.Window, vaults[i], p)
		if err != nil {
			return err
		}
		mu.Lock()
		findings[KindAccessAnomaly] = append(findings[KindAccessAnomaly], fs...)
		mu.Unlock()
		return nil
	})
}

// utcDay is the midnight (UTC) starting t's day.
func utcDay(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// vaultAnomalies scores the days and hours of w for one vault. It reads
// the window's days of counts twice (once to pick the callers worth a
// series, once with the 14 days before), a day at a time, so memory is
// one day's counts per request in flight plus the series.
func (q *Querier) vaultAnomalies(ctx context.Context, w Window, vault string, p AnomalyParams) ([]Finding, error) {
	vk := index.EncodeKeyPart(vault)
	firstDay := utcDay(w.From)
	endDay := utcDay(w.To.Add(-time.Nanosecond)).Add(24 * time.Hour)
	windowDays := int(endDay.Sub(firstDay) / (24 * time.Hour))
	start := firstDay.Add(-anomalyHistoryDays * 24 * time.Hour)
	totalDays := anomalyHistoryDays + windowDays

	// Pass 1: the callers of the window that could be flagged at all.
	var mu sync.Mutex
	summaries := map[string]*callerSummary{}
	err := q.parallel(ctx, windowDays, func(ctx context.Context, i int) error {
		day := firstDay.Add(time.Duration(i) * 24 * time.Hour)
		c, err := q.readCounts(ctx, vk, day, day.Add(24*time.Hour), index.DimCaller)
		if err != nil {
			return err
		}
		daySum := map[string]float64{}
		dayMaxHour := map[string]float64{}
		for k, h := range c.Hours {
			if k.Vault != vault {
				continue
			}
			hour := map[string]float64{}
			for _, dim := range index.ClassDims(index.DimCaller) {
				for caller, n := range h.Dims[dim] {
					if caller != "-" && caller != index.OtherKey {
						hour[caller] += float64(n)
					}
				}
			}
			for caller, n := range hour {
				daySum[caller] += n
				dayMaxHour[caller] = math.Max(dayMaxHour[caller], n)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for caller, n := range daySum {
			s := summaries[caller]
			if s == nil {
				s = &callerSummary{}
				summaries[caller] = s
			}
			s.total += n
			s.maxDay = math.Max(s.maxDay, n)
			s.maxHour = math.Max(s.maxHour, dayMaxHour[caller])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	least := p.minFlagged()
	var callers []string
	for c, s := range summaries {
		if s.maxDay >= least || s.maxHour >= least {
			callers = append(callers, c)
		}
	}
	sort.Slice(callers, func(i, j int) bool {
		a, b := summaries[callers[i]].total, summaries[callers[j]].total
		return a > b || a == b && callers[i] < callers[j]
	})
	if len(callers) > maxAnomalyCallers {
		callers = callers[:maxAnomalyCallers]
	}

	// Pass 2: the series, history included.
	series := newHourSeries(start, totalDays*24, callers)
	dim := ""
	if len(callers) > 0 {
		dim = index.DimCaller
	}
	err = q.parallel(ctx, totalDays, func(ctx context.Context, i int) error {
		day := start.Add(time.Duration(i) * 24 * time.Hour)
		c, err := q.readCounts(ctx, vk, day, day.Add(24*time.Hour), dim)
		if err != nil {
			return err
		}
		mu.Lock()
		series.add(vault, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return scoreSeries(series, vault, w, p), nil
}

// scoreSeries scores every day and hour of w in s (whose first
// anomalyHistoryDays days are history) and returns the flagged ones.
func scoreSeries(s *hourSeries, vault string, w Window, p AnomalyParams) []Finding {
	// Days before the vault's first counted hour are unknown, not quiet.
	seen := -1
	for i, v := range s.total {
		if v > 0 {
			seen = i / 24
			break
		}
	}
	if seen < 0 {
		return nil
	}
	days := len(s.total) / 24
	var out []Finding
	score := func(caller string, v []float64) {
		daily := make([]float64, days)
		for i, x := range v {
			daily[i/24] += x
		}
		for d := anomalyHistoryDays; d < days; d++ {
			dayStart := s.start.Add(time.Duration(d) * 24 * time.Hour)
			if !dayStart.Add(24*time.Hour).After(w.From) || !dayStart.Before(w.To) {
				continue
			}
			// A day is scored only once its vault has a history.
			if f, ok := scoreUnit(daily, d, 1, 7, seen, p); ok {
				out = append(out, anomalyFinding(vault, caller, SeriesDay, dayStart, 24*time.Hour, daily[d], f))
			}
			for h := 0; h < 24; h++ {
				hourStart := dayStart.Add(time.Duration(h) * time.Hour)
				if !hourStart.Add(time.Hour).After(w.From) || !hourStart.Before(w.To) {
					continue
				}
				i := d*24 + h
				if f, ok := scoreUnit(v, i, 24, 7*24, seen*24, p); ok {
					out = append(out, anomalyFinding(vault, caller, SeriesHour, hourStart, time.Hour, v[i], f))
				}
			}
		}
	}
	score("", s.total)
	callers := make([]string, 0, len(s.callers))
	for c := range s.callers {
		callers = append(callers, c)
	}
	sort.Strings(callers)
	for _, c := range callers {
		score(c, s.callers[c])
	}
	return out
}

// scoreUnit scores v[i] against the same unit step, 2×step … 14×step
// before it (those at or after first, the first known unit) and the
// season (week) one and two weeks before.
func scoreUnit(v []float64, i, step, week, first int, p AnomalyParams) (anomalyScore, bool) {
	x := v[i]
	if x < p.minFlagged() {
		return anomalyScore{}, false // cheap: it cannot be flagged
	}
	history := make([]float64, 0, anomalyHistoryDays)
	for k := 1; k <= anomalyHistoryDays; k++ {
		if j := i - k*step; j >= first && j >= 0 {
			history = append(history, v[j])
		}
	}
	if len(history) < anomalyMinHistoryDays {
		return anomalyScore{}, false
	}
	var seasonal []float64
	for k := 1; k <= 2; k++ {
		if j := i - k*week; j >= first && j >= 0 {
			seasonal = append(seasonal, v[j])
		}
	}
	s := scoreAnomaly(x, history, seasonal, p)
	return s, s.flagged
}

func anomalyFinding(vault, caller, series string, start time.Time, d time.Duration, x float64, s anomalyScore) Finding {
	round := func(f float64) float64 { return math.Round(f*100) / 100 }
	return Finding{
		Kind: KindAccessAnomaly, Vault: vault, Caller: caller,
		Day:   start.Format(time.DateOnly),
		Count: int64(x),
		First: parse.FormatTime(start), Last: parse.FormatTime(start.Add(d - 100*time.Nanosecond)),
		Anomaly: &AnomalyDetail{
			Series: series, Start: start.Format(time.RFC3339),
			Baseline: round(s.baseline), Scale: round(s.scale), Score: round(s.score),
		},
	}
}
