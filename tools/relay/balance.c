/* SPDX-License-Identifier: MIT */
/*
 * balance.c - choosing an upstream server per connection, and each server's health.
 *
 * A balancer is one immutable list of servers (name, weight, and every address the name
 * resolved to: a connect tries them in turn, so a name whose first address is not served
 * still works) with a policy:
 *   roundrobin  smooth weighted round robin (nginx's): each pick adds every eligible
 *               server's weight to its credit and takes the one with the most, which then
 *               pays the total; weights 5,1,1 give a a b a c a a, never five in a row.
 *   leastconn   fewest active connections per weight; ties go round the list.
 *   source      a hash of the client's IP (not its port) over the whole list by weight, so
 *               a client keeps its server while the list is the same; when that server is
 *               out, the next one in the list takes the client.
 * A pick returns an order, not one server: the chosen one, then the servers after it in list
 * order. The connect path tries them in turn, so a refusal or a timeout costs the client one
 * retry, not a failure. Servers that are out are left off; when all are out, every server is
 * tried anyway (so a set that is wholly marked out still gets a chance to prove otherwise).
 *
 * Health: fail_threshold connect failures (or failed active checks) in a row take a server
 * out. Passive only, it is back in after down_ms (the next connect decides: a success resets
 * it, a failure takes it out again). With active checks it stays out until a check succeeds.
 * Every change is told to on_change (the relay logs it), outside the lock.
 *
 * Threads: workers pick and report concurrently. Picks and state changes take the
 * balancer's mutex (a few dozen instructions per connection, not per byte); the counters
 * read by /stats and /metrics are relaxed atomics. On reload the relay builds a new balancer,
 * inherits state and counters of same-named servers, and swaps; connections hold a reference
 * from pick to close, so the old list lives until its last connection ends.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tide/net.h>

#include "ops.h"

struct server {
	struct sockaddr_storage addr;
	socklen_t len;
	struct sockaddr_storage *more; /* further addresses of the same name (malloc) */
	socklen_t *more_len;
	unsigned n_more;
	struct tide_addrs *connect_to; /* the same list for tide_conn_connect(): one per server */
	char name[RELAY_HOST_MAX + 8];
	unsigned weight;
	/* under the lock */
	long credit; /* smooth round robin */
	unsigned consecutive;
	bool down;
	uint64_t down_until;
	/* relaxed atomics, for stats */
	atomic_uint active;
	atomic_uint_fast64_t connects, connect_failures, health_failures, downs, bytes_up,
		bytes_down;
};

struct relay_balancer {
	struct relay_balancer_config cfg;
	pthread_mutex_t lock;
	atomic_uint refs;
	unsigned n;
	unsigned total_weight;
	unsigned cursor; /* leastconn ties */
	struct server s[];
};

uint64_t relay_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t relay_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int relay_balancer_create(const struct relay_balancer_config *cfg,
			  const struct sockaddr_storage *addrs, const socklen_t *lens,
			  const char *const *names, const unsigned *weights, unsigned n,
			  struct relay_balancer **out)
{
	struct relay_balancer *b;

	if (!cfg || !addrs || !lens || !out || !n || n > RELAY_MAX_UPSTREAM ||
	    cfg->policy > RELAY_BALANCE_SOURCE)
		return -EINVAL;
	b = calloc(1, sizeof(*b) + n * sizeof(b->s[0]));
	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	if (!b->cfg.fail_threshold)
		b->cfg.fail_threshold = 3;
	if (!b->cfg.down_ms)
		b->cfg.down_ms = 10000;
	pthread_mutex_init(&b->lock, NULL);
	atomic_init(&b->refs, 1);
	b->n = n;
	for (unsigned i = 0; i < n; i++) {
		struct server *s = &b->s[i];

		if (lens[i] > sizeof(s->addr) || (weights && (!weights[i] || weights[i] > 256))) {
			pthread_mutex_destroy(&b->lock);
			free(b);
			return -EINVAL;
		}
		memcpy(&s->addr, &addrs[i], lens[i]);
		s->len = lens[i];
		s->weight = weights ? weights[i] : 1;
		b->total_weight += s->weight;
		if (names && names[i])
			snprintf(s->name, sizeof(s->name), "%s", names[i]);
		else
			relay_addr_format((const struct sockaddr *)&s->addr, s->name,
					  sizeof(s->name));
	}
	*out = b;
	return 0;
}

void relay_balancer_get(struct relay_balancer *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void relay_balancer_put(struct relay_balancer *b)
{
	if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < b->n; i++) {
		free(b->s[i].more);
		free(b->s[i].more_len);
		free(b->s[i].connect_to);
	}
	pthread_mutex_destroy(&b->lock);
	free(b);
}

unsigned relay_balancer_count(const struct relay_balancer *b)
{
	return b->n;
}

const struct sockaddr *relay_balancer_addr(const struct relay_balancer *b, unsigned i,
					   socklen_t *len)
{
	if (len)
		*len = b->s[i].len;
	return (const struct sockaddr *)&b->s[i].addr;
}

int relay_balancer_add_address(struct relay_balancer *b, unsigned i, const struct sockaddr *sa,
			       socklen_t len)
{
	struct server *s = &b->s[i];
	struct sockaddr_storage *more;
	socklen_t *lens;

	if (i >= b->n || len > sizeof(*more) || s->n_more + 1 >= RELAY_ADDRS_MAX)
		return -EINVAL;
	more = realloc(s->more, (s->n_more + 1) * sizeof(*more));
	if (!more)
		return -ENOMEM;
	s->more = more;
	lens = realloc(s->more_len, (s->n_more + 1) * sizeof(*lens));
	if (!lens)
		return -ENOMEM;
	s->more_len = lens;
	memset(&more[s->n_more], 0, sizeof(*more));
	memcpy(&more[s->n_more], sa, len);
	lens[s->n_more++] = len;
	return 0;
}

unsigned relay_balancer_addrs(const struct relay_balancer *b, unsigned i,
			      struct sockaddr_storage *addrs, socklen_t *lens, unsigned max)
{
	const struct server *s = &b->s[i];
	unsigned n = 0;

	if (max) {
		memcpy(&addrs[0], &s->addr, sizeof(s->addr));
		lens[n++] = s->len;
	}
	for (unsigned k = 0; k < s->n_more && n < max; k++, n++) {
		memcpy(&addrs[n], &s->more[k], sizeof(s->more[k]));
		lens[n] = s->more_len[k];
	}
	return n;
}

/*
 * Server i's addresses as tide_conn_connect() takes them, made at the first connect and kept
 * with the balancer (a connection holds a reference to it while it connects), so connecting
 * allocates nothing per connection: a 2 KiB list per connection, freed once connected,
 * left the heap as fragmented as the connections were many.
 */
const struct tide_addrs *relay_balancer_connect_addrs(struct relay_balancer *b, unsigned i)
{
	struct server *s = &b->s[i];
	struct tide_addrs *to;

	pthread_mutex_lock(&b->lock);
	to = s->connect_to;
	if (!to && (to = calloc(1, sizeof(*to)))) {
		to->n = relay_balancer_addrs(b, i, to->addr, to->len, TIDE_ADDRS_MAX);
		s->connect_to = to;
	}
	pthread_mutex_unlock(&b->lock);
	return to;
}

const char *relay_balancer_name(const struct relay_balancer *b, unsigned i)
{
	return b->s[i].name;
}

#define LOAD(x)	    atomic_load_explicit(&(x), memory_order_relaxed)
#define ADD(x, v)   atomic_fetch_add_explicit(&(x), (v), memory_order_relaxed)
#define STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)

void relay_balancer_inherit(struct relay_balancer *b, const struct relay_balancer *old)
{
	struct relay_balancer *o = (struct relay_balancer *)old; /* its lock, not its data */

	if (!old)
		return;
	pthread_mutex_lock(&o->lock);
	for (unsigned i = 0; i < b->n; i++)
		for (unsigned j = 0; j < o->n; j++) {
			struct server *s = &b->s[i], *p = &o->s[j];

			if (strcmp(s->name, p->name))
				continue;
			s->consecutive = p->consecutive;
			s->down = p->down;
			s->down_until = p->down_until;
			STORE(s->connects, LOAD(p->connects));
			STORE(s->connect_failures, LOAD(p->connect_failures));
			STORE(s->health_failures, LOAD(p->health_failures));
			STORE(s->downs, LOAD(p->downs));
			STORE(s->bytes_up, LOAD(p->bytes_up));
			STORE(s->bytes_down, LOAD(p->bytes_down));
			break;
		}
	pthread_mutex_unlock(&o->lock);
}

/* Under the lock. */
static bool eligible(const struct relay_balancer *b, const struct server *s, uint64_t now)
{
	return !s->down || (!b->cfg.active_checks && now >= s->down_until);
}

bool relay_balancer_is_up(struct relay_balancer *b, unsigned i, uint64_t now_ms)
{
	bool up;

	pthread_mutex_lock(&b->lock);
	up = eligible(b, &b->s[i], now_ms);
	pthread_mutex_unlock(&b->lock);
	return up;
}

/* FNV-1a over the IP bytes: stable across runs and hosts, so a client keeps its server. */
static uint32_t ip_hash(const struct sockaddr *client)
{
	uint8_t ip[16];
	size_t len = relay_addr_ip(client, ip);
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ ip[i]) * 16777619u;
	return h ^ (h >> 16);
}

/* Under the lock: the first choice, or -1 when nothing is eligible. */
static int first_choice(struct relay_balancer *b, const struct sockaddr *client, uint64_t now)
{
	int best = -1;

	switch (b->cfg.policy) {
	case RELAY_BALANCE_ROUNDROBIN: {
		long total = 0;

		for (unsigned i = 0; i < b->n; i++) {
			if (!eligible(b, &b->s[i], now))
				continue;
			b->s[i].credit += b->s[i].weight;
			total += b->s[i].weight;
			if (best < 0 || b->s[i].credit > b->s[best].credit)
				best = (int)i;
		}
		if (best >= 0)
			b->s[best].credit -= total;
		return best;
	}
	case RELAY_BALANCE_LEASTCONN:
		for (unsigned k = 0; k < b->n; k++) {
			unsigned i = (b->cursor + k) % b->n;
			unsigned long long a = LOAD(b->s[i].active);

			if (!eligible(b, &b->s[i], now))
				continue;
			if (best < 0 ||
			    a * b->s[best].weight <
				    (unsigned long long)LOAD(b->s[best].active) * b->s[i].weight)
				best = (int)i;
		}
		b->cursor = (b->cursor + 1) % b->n;
		return best;
	case RELAY_BALANCE_SOURCE: {
		unsigned slot = ip_hash(client) % b->total_weight, i = 0;

		while (slot >= b->s[i].weight)
			slot -= b->s[i++].weight;
		for (unsigned k = 0; k < b->n; k++, i = (i + 1) % b->n)
			if (eligible(b, &b->s[i], now))
				return (int)i;
		return -1;
	}
	}
	return -1;
}

unsigned relay_balancer_pick(struct relay_balancer *b, const struct sockaddr *client,
			     uint64_t now_ms, unsigned *order, unsigned max)
{
	unsigned n = 0;
	int first;

	if (!max)
		return 0;
	pthread_mutex_lock(&b->lock);
	first = first_choice(b, client, now_ms);
	if (first >= 0) {
		for (unsigned k = 0; k < b->n && n < max; k++) {
			unsigned i = ((unsigned)first + k) % b->n;

			if (eligible(b, &b->s[i], now_ms))
				order[n++] = i;
		}
	} else { /* every server is out: try them all, from a moving start */
		unsigned start = b->cursor++ % b->n;

		for (unsigned k = 0; k < b->n && n < max; k++)
			order[n++] = (start + k) % b->n;
	}
	pthread_mutex_unlock(&b->lock);
	return n;
}

int relay_balancer_first(struct relay_balancer *b, const struct sockaddr *client, uint64_t now_ms,
			 bool *all)
{
	int first;

	if (!b->n)
		return -1;
	pthread_mutex_lock(&b->lock);
	first = first_choice(b, client, now_ms);
	*all = first < 0;
	if (first < 0) /* every server is out: try them all, from a moving start */
		first = (int)(b->cursor++ % b->n);
	pthread_mutex_unlock(&b->lock);
	return first;
}

int relay_balancer_next(struct relay_balancer *b, unsigned first, bool all, unsigned *k,
			uint64_t now_ms)
{
	int next = -1;

	pthread_mutex_lock(&b->lock);
	while (next < 0 && *k < b->n) {
		unsigned i = (first + (*k)++) % b->n;

		if (all || eligible(b, &b->s[i], now_ms))
			next = (int)i;
	}
	pthread_mutex_unlock(&b->lock);
	return next;
}

void relay_balancer_connect_start(struct relay_balancer *b, unsigned i)
{
	ADD(b->s[i].active, 1);
}

/* Tell on_change, outside the lock. */
static void tell(struct relay_balancer *b, unsigned i, int change, const char *why)
{
	if (change && b->cfg.on_change)
		b->cfg.on_change(b->s[i].name, change > 0, why, b->cfg.arg);
}

/* Under the lock: a success; 1 if the server came back. */
static int success(struct server *s)
{
	bool was_down = s->down;

	s->consecutive = 0;
	s->down = false;
	return was_down ? 1 : 0;
}

/* Under the lock: a failure; -1 if it took the server out. */
static int failure(struct relay_balancer *b, struct server *s, uint64_t now)
{
	if (++s->consecutive < b->cfg.fail_threshold)
		return 0;
	s->down_until = now + b->cfg.down_ms; /* passive: again out after a failed retry */
	if (s->down)
		return 0;
	s->down = true;
	ADD(s->downs, 1);
	return -1;
}

void relay_balancer_connect_ok(struct relay_balancer *b, unsigned i, uint64_t now_ms)
{
	int change;

	ADD(b->s[i].connects, 1);
	pthread_mutex_lock(&b->lock);
	change = success(&b->s[i]);
	pthread_mutex_unlock(&b->lock);
	tell(b, i, change, "a connect succeeded");
}

void relay_balancer_connect_failed(struct relay_balancer *b, unsigned i, int err, uint64_t now_ms)
{
	int change;

	atomic_fetch_sub_explicit(&b->s[i].active, 1, memory_order_relaxed);
	ADD(b->s[i].connect_failures, 1);
	pthread_mutex_lock(&b->lock);
	change = failure(b, &b->s[i], now_ms);
	pthread_mutex_unlock(&b->lock);
	tell(b, i, change, err == -ETIMEDOUT ? "connects timed out" : "connects failed");
}

bool relay_err_is_local(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM ||
	       err == -EADDRNOTAVAIL;
}

void relay_balancer_closed(struct relay_balancer *b, unsigned i, uint64_t bytes_up,
			   uint64_t bytes_down)
{
	atomic_fetch_sub_explicit(&b->s[i].active, 1, memory_order_relaxed);
	ADD(b->s[i].bytes_up, bytes_up);
	ADD(b->s[i].bytes_down, bytes_down);
}

void relay_balancer_health_result(struct relay_balancer *b, unsigned i, int err, uint64_t now_ms)
{
	int change;

	if (err)
		ADD(b->s[i].health_failures, 1);
	pthread_mutex_lock(&b->lock);
	change = err ? failure(b, &b->s[i], now_ms) : success(&b->s[i]);
	pthread_mutex_unlock(&b->lock);
	tell(b, i, change, err ? "health checks failed" : "a health check succeeded");
}

void relay_balancer_stats(struct relay_balancer *b, unsigned i, uint64_t now_ms,
			  struct relay_upstream_stats *st)
{
	struct server *s = &b->s[i];

	memset(st, 0, sizeof(*st));
	snprintf(st->name, sizeof(st->name), "%s", s->name);
	st->weight = s->weight;
	pthread_mutex_lock(&b->lock);
	st->up = eligible(b, s, now_ms);
	st->consecutive_failures = s->consecutive;
	pthread_mutex_unlock(&b->lock);
	st->active = LOAD(s->active);
	st->connects = LOAD(s->connects);
	st->connect_failures = LOAD(s->connect_failures);
	st->health_failures = LOAD(s->health_failures);
	st->downs = LOAD(s->downs);
	st->bytes_up = LOAD(s->bytes_up);
	st->bytes_down = LOAD(s->bytes_down);
}

/* One metric family of /metrics: every server's value, in one group. */
struct metric {
	const char *name, *type, *help;
	size_t off; /* in struct relay_upstream_stats */
	char kind;  /* 'b' bool, 'u' unsigned, 'q' uint64_t */
};

#define M(name, type, help, field, kind)                                                           \
	{                                                                                          \
		name, type, help, offsetof(struct relay_upstream_stats, field), kind               \
	}
static const struct metric metrics[] = {
	M("up", "gauge", "1 while the upstream is in rotation, 0 while out after failures.", up,
	  'b'),
	M("weight", "gauge", "The upstream's weight.", weight, 'u'),
	M("active_connections", "gauge", "Connections to the upstream now.", active, 'u'),
	M("connections_total", "counter", "Connections established to the upstream.", connects,
	  'q'),
	M("connect_failures_total", "counter", "Connects refused, timed out or unreachable.",
	  connect_failures, 'q'),
	M("health_check_failures_total", "counter", "Active health checks that failed.",
	  health_failures, 'q'),
	M("downs_total", "counter", "Times the upstream was taken out of rotation.", downs, 'q'),
	M("sent_bytes_total", "counter", "Bytes relayed from clients to the upstream.", bytes_up,
	  'q'),
	M("received_bytes_total", "counter", "Bytes relayed from the upstream to clients.",
	  bytes_down, 'q'),
};

static unsigned long long field(const struct relay_upstream_stats *st, const struct metric *m)
{
	const char *p = (const char *)st + m->off;

	if (m->kind == 'b')
		return *(const bool *)p;
	if (m->kind == 'u')
		return *(const unsigned *)p;
	return *(const uint64_t *)p;
}

/* A label value or JSON string: names are host:port, but escape anyway. */
static void quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void relay_balancer_write_prometheus(FILE *f, struct relay_balancer *b, uint64_t now_ms)
{
	struct relay_upstream_stats *st = calloc(b->n, sizeof(*st));

	if (!st)
		return;
	for (unsigned i = 0; i < b->n; i++)
		relay_balancer_stats(b, i, now_ms, &st[i]);
	for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
		fprintf(f, "# HELP tide_upstream_%s %s\n# TYPE tide_upstream_%s %s\n",
			metrics[m].name, metrics[m].help, metrics[m].name, metrics[m].type);
		for (unsigned i = 0; i < b->n; i++) {
			fprintf(f, "tide_upstream_%s{upstream=", metrics[m].name);
			quoted(f, st[i].name);
			fprintf(f, "} %llu\n", field(&st[i], &metrics[m]));
		}
	}
	free(st);
}

void relay_balancer_write_json(FILE *f, struct relay_balancer *b, uint64_t now_ms)
{
	struct relay_upstream_stats st;

	fputc('[', f);
	for (unsigned i = 0; i < b->n; i++) {
		relay_balancer_stats(b, i, now_ms, &st);
		fprintf(f, "%s{\"name\": ", i ? ", " : "");
		quoted(f, st.name);
		for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
			if (metrics[m].kind == 'b')
				fprintf(f, ", \"%s\": %s", metrics[m].name,
					field(&st, &metrics[m]) ? "true" : "false");
			else
				fprintf(f, ", \"%s\": %llu", metrics[m].name,
					field(&st, &metrics[m]));
		}
		fprintf(f, ", \"consecutive_failures\": %u}", st.consecutive_failures);
	}
	fputc(']', f);
}
