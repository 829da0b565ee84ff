package dns

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the DNS server's Prometheus metrics.
type Metrics struct {
	Queries         *prometheus.CounterVec
	Duration        prometheus.Histogram
	CacheHits       prometheus.Counter
	CacheMisses     prometheus.Counter
	CacheEvictions  prometheus.Counter
	UpstreamErrors  *prometheus.CounterVec
	Dropped         prometheus.Counter
	Skipped         *prometheus.GaugeVec
	ProgrammingTime prometheus.Histogram
	Loops           prometheus.Gauge
}

// NewMetrics registers the metrics with reg (none when nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skein_dns_queries_total",
			Help: "DNS queries answered, by question type and response code."}, []string{"type", "rcode"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skein_dns_request_duration_seconds",
			Help:    "Time from a query's arrival to its answer.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		CacheHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "skein_dns_cache_hits_total",
			Help: "Forwarded questions answered from the cache."}),
		CacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "skein_dns_cache_misses_total",
			Help: "Forwarded questions the cache did not hold."}),
		CacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "skein_dns_cache_evictions_total",
			Help: "Answers dropped from the cache before they expired, to stay within its bounds."}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skein_dns_upstream_errors_total",
			Help: "Failed exchanges with an upstream resolver, by upstream and reason."}, []string{"upstream", "reason"}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "skein_dns_inflight_dropped_total",
			Help: "Queries turned away at once because too many were in flight: REFUSED for an upstream, SERVFAIL while the first zone is awaited."}),
		Skipped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skein_dns_skipped_services",
			Help: "Services the last zone could not name, by reason."}, []string{"reason"}),
		ProgrammingTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skein_dns_programming_latency_seconds",
			Help:    "Time from an EndpointSlice change (its last-change-trigger-time) to its names being answered.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		Loops: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skein_dns_upstream_loops",
			Help: "Upstream resolvers not used because they forward back to this server."}),
	}
	if reg != nil {
		reg.MustRegister(m.Queries, m.Duration, m.CacheHits, m.CacheMisses, m.CacheEvictions,
			m.UpstreamErrors, m.Dropped, m.Skipped, m.ProgrammingTime, m.Loops)
	}
	return m
}
