/* SPDX-License-Identifier: MIT */
/*
 * runtime.c - the relay's running configuration, and SIGHUP reload as one transaction.
 *
 * The runtime ties the other files together the way the relay's main thread uses them:
 * at start it opens the logs, resolves the upstreams into a balancer, starts health checks
 * and checks that each listener's port is free; the engine binds them (its sockets set
 * SO_REUSEPORT, which would quietly share a port another process holds, hence the check
 * without it first, unless reuse-port is asked for). Once the engine runs, the relay
 * attaches two callbacks (add and remove a listener: the only engine-specific part). On
 * SIGHUP it builds everything new beside the old (a fresh config, new listeners added to
 * the engine, a new balancer that inherits the old one's state) and only when all of it
 * succeeded swaps it in and removes what is gone; any failure removes what this reload
 * added and leaves the running relay exactly as it was, with the reason logged. Unchanged
 * listeners (same HOST:PORT text) are not touched, so there is no moment when their port
 * refuses a connection and their accept queues lose nothing.
 *
 * Without callbacks (ops NULL) a reload keeps the listener list (and says so).
 *
 * Workers never read rt->cfg (a reload rewrites it on the main thread): they take the
 * current balancer with relay_runtime_balancer (a reference, under a mutex so a swap cannot
 * free it between the load and the get) and a copy of the few settings a connection needs
 * with relay_runtime_settings, and put the balancer when their connection closes; a
 * connection established before a reload thus keeps its server and its counters, and the
 * old set is freed with its last connection.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"

void relay_runtime_log_config(const struct relay_config *cfg, struct relay_log_config *lc)
{
	memset(lc, 0, sizeof(*lc));
	lc->level = cfg->log_level;
	lc->syslog = cfg->syslog;
	lc->fd = -1;
	lc->access = cfg->access_log;
	lc->access_path = cfg->access_log_path;
}

static void on_change(const char *name, bool up, const char *why, void *arg)
{
	char key[RELAY_HOST_MAX + 32];

	snprintf(key, sizeof(key), "upstream %s %s", name, up ? "up" : "down");
	relay_log_limited(up ? RELAY_LOG_INFO : RELAY_LOG_WARN, key, "upstream %s is %s: %s", name,
			  up ? "back in rotation" : "out of rotation", why);
}

/* Resolve cfg's upstreams into a new balancer (inheriting from old). 0 or -errno, logged. */
static int make_balancer(const struct relay_config *cfg, const struct relay_balancer *old,
			 struct relay_balancer **out)
{
	struct relay_balancer_config bc = {.policy = cfg->balance,
					   .active_checks = cfg->health_interval_ms > 0,
					   .on_change = on_change};
	struct sockaddr_storage *addrs;
	socklen_t *lens;
	unsigned *weights;
	char(*names)[RELAY_HOST_MAX + 8];
	const char **np;
	int rc = 0;

	*out = NULL;
	if (!cfg->n_upstream)
		return 0; /* echo */
	addrs = calloc(cfg->n_upstream, sizeof(*addrs));
	lens = calloc(cfg->n_upstream, sizeof(*lens));
	weights = calloc(cfg->n_upstream, sizeof(*weights));
	names = calloc(cfg->n_upstream, sizeof(*names));
	np = calloc(cfg->n_upstream, sizeof(*np));
	if (!addrs || !lens || !weights || !names || !np) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < cfg->n_upstream && !rc; i++) {
		const struct relay_endpoint *ep = &cfg->upstream[i].ep;

		rc = relay_endpoint_resolve(ep, false, &addrs[i], &lens[i]); /* more below */
		if (rc) {
			char why[256], t[RELAY_ENDPOINT_TEXT];

			relay_log(RELAY_LOG_ERROR, "upstream %s: cannot resolve: %s",
				  relay_endpoint_text(ep, t, sizeof(t)),
				  relay_endpoint_resolve_why(ep, false, why, sizeof(why)));
		}
		relay_endpoint_text(ep, names[i], sizeof(names[i]));
		np[i] = names[i];
		weights[i] = cfg->upstream[i].weight;
	}
	if (!rc)
		rc = relay_balancer_create(&bc, addrs, lens, np, weights, cfg->n_upstream, out);
	for (unsigned i = 0; i < cfg->n_upstream && !rc; i++) { /* the name's other addresses */
		struct sockaddr_storage all[RELAY_ADDRS_MAX];
		socklen_t all_len[RELAY_ADDRS_MAX];
		unsigned n = 0;

		relay_endpoint_resolve_all(&cfg->upstream[i].ep, false, all, all_len,
					   RELAY_ADDRS_MAX, &n);
		for (unsigned k = 1; k < n && !rc; k++)
			rc = relay_balancer_add_address(*out, i, (struct sockaddr *)&all[k],
							all_len[k]);
	}
	if (rc && *out) {
		relay_balancer_put(*out);
		*out = NULL;
	}
	if (!rc)
		relay_balancer_inherit(*out, old);
out:
	free(addrs), free(lens), free(weights), free(names), free(np);
	return rc;
}

static bool same_endpoint(const struct relay_endpoint *a, const struct relay_endpoint *b)
{
	return a->port == b->port && !strcmp(a->host, b->host);
}

static bool same_listeners(const struct relay_config *a, const struct relay_config *b)
{
	if (a->n_listen != b->n_listen)
		return false;
	for (unsigned i = 0; i < a->n_listen; i++)
		if (!same_endpoint(&a->listen[i], &b->listen[i]))
			return false;
	return true;
}

/* Check one listener's port and hand it to the engine. 0 or -errno, logged. */
static int open_listener(struct relay_runtime *rt, const struct relay_config *cfg,
			 const struct relay_endpoint *ep, struct relay_listener *l)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int rc = relay_endpoint_resolve(ep, true, &sa, &len);

	if (!rc && !cfg->reuse_port)
		rc = relay_port_probe((struct sockaddr *)&sa, len, relay_endpoint_every(ep));
	if (!rc && rt->ops.listener_add)
		rc = rt->ops.listener_add(ep, rt->ops.arg);
	if (rc) {
		char why[256] = "cannot resolve: ", t[RELAY_ENDPOINT_TEXT];

		if (rc == -ENOENT)
			relay_endpoint_resolve_why(ep, true, why + 16, sizeof(why) - 16);
		relay_log(
			RELAY_LOG_ERROR, "listen %s: %s%s", relay_endpoint_text(ep, t, sizeof(t)),
			rc == -ENOENT ? why : strerror(-rc),
			rc == -EADDRINUSE && !cfg->reuse_port
				? " (another socket holds the port; --reuse-port shares it)"
			: rc == -EACCES && ep->port < 1024
				? " (a port below 1024 needs CAP_NET_BIND_SERVICE: root, or after "
				  "--user the one capability the relay keeps unless the service's "
				  "CapabilityBoundingSet removed it; else restart)"
				: "");
		return rc;
	}
	l->ep = *ep;
	return 0;
}

static void close_listener(struct relay_runtime *rt, struct relay_listener *l)
{
	if (rt->ops.listener_remove)
		rt->ops.listener_remove(&l->ep, rt->ops.arg);
}

static int start_health(const struct relay_config *cfg, struct relay_balancer *b,
			struct relay_health **out)
{
	*out = NULL;
	if (!b || !cfg->health_interval_ms)
		return 0;
	return relay_health_start(b, cfg->health_interval_ms, cfg->connect_timeout_ms, out);
}

static void settings_of(const struct relay_config *c, struct relay_conn_settings *s)
{
	s->connect_timeout_ms = c->connect_timeout_ms;
	s->send_proxy = c->send_proxy;
	s->max_conns_per_ip = c->max_conns_per_ip;
	s->max_conns = c->max_conns;
	s->accept_proxy = c->accept_proxy;
	s->keepalive = c->keepalive;
	s->echo = c->echo;
	s->access_log = c->access_log;
}

int relay_runtime_start(struct relay_runtime *rt, const struct relay_config *cfg,
			const struct relay_runtime_ops *ops)
{
	struct relay_log_config lc;
	int rc;

	memset(rt, 0, sizeof(*rt));
	pthread_mutex_init(&rt->lock, NULL);
	rt->cfg = *cfg;
	settings_of(cfg, &rt->settings);
	if (ops)
		rt->ops = *ops;
	relay_runtime_log_config(cfg, &lc);
	rc = relay_log_open(&lc);
	if (rc) {
		relay_log(RELAY_LOG_ERROR, "access log %s: %s", cfg->access_log_path,
			  strerror(-rc));
		goto fail;
	}
	rc = relay_peer_limit_create(cfg->max_conns_per_ip, &rt->peers);
	if (!rc)
		rc = make_balancer(cfg, NULL, &rt->balancer);
	if (!rc)
		rc = start_health(cfg, rt->balancer, &rt->health);
	for (unsigned i = 0; !rc && i < cfg->n_listen; i++) {
		rc = open_listener(rt, cfg, &cfg->listen[i], &rt->listeners[i]);
		if (!rc)
			rt->n_listeners++;
	}
	if (!rc)
		return 0;
fail:
	relay_runtime_stop(rt);
	return rc;
}

void relay_runtime_attach(struct relay_runtime *rt, const struct relay_runtime_ops *ops)
{
	if (ops)
		rt->ops = *ops;
	else
		memset(&rt->ops, 0, sizeof(rt->ops));
}

void relay_runtime_settings(struct relay_runtime *rt, struct relay_conn_settings *s)
{
	pthread_mutex_lock(&rt->lock);
	*s = rt->settings;
	pthread_mutex_unlock(&rt->lock);
}

struct relay_balancer *relay_runtime_balancer(struct relay_runtime *rt)
{
	struct relay_balancer *b;

	pthread_mutex_lock(&rt->lock);
	b = rt->balancer;
	if (b)
		relay_balancer_get(b);
	pthread_mutex_unlock(&rt->lock);
	return b;
}

bool relay_runtime_client_open(struct relay_runtime *rt, const struct relay_conn_settings *s)
{
	unsigned long n = atomic_fetch_add_explicit(&rt->clients, 1, memory_order_relaxed) + 1;

	if (!s->max_conns || n <= s->max_conns)
		return true;
	relay_runtime_refused(rt, RELAY_REFUSED_MAX_CONNS);
	relay_log_limited(RELAY_LOG_WARN, "max-conns", "over --max-conns %u: a client is reset",
			  s->max_conns);
	return false;
}

void relay_runtime_client_gone(struct relay_runtime *rt)
{
	atomic_fetch_sub_explicit(&rt->clients, 1, memory_order_relaxed);
}

void relay_runtime_refused(struct relay_runtime *rt, enum relay_refusal why)
{
	if ((unsigned)why < RELAY_REFUSED_N)
		atomic_fetch_add_explicit(&rt->refused[why], 1, memory_order_relaxed);
}

const char *relay_refusal_name(enum relay_refusal why)
{
	static const char *const names[] = {"max-conns", "max-conns-per-ip", "resource"};

	return (unsigned)why < RELAY_REFUSED_N ? names[why] : "?";
}

/* Log a reload's problems (what relay_config_reload wrote), one line each. */
static void log_lines(enum relay_log_level level, const char *prefix, char *text)
{
	char *save = NULL;

	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		relay_log(level, "%s%s", prefix, l);
}

/* Build the new listener set: unchanged ones carried over, new ones opened into next[]. */
static int plan_listeners(struct relay_runtime *rt, const struct relay_config *fresh,
			  struct relay_listener *next, bool *opened)
{
	for (unsigned i = 0; i < fresh->n_listen; i++) {
		const struct relay_endpoint *ep = &fresh->listen[i];
		int rc;

		bool found = false;

		opened[i] = false;
		for (unsigned j = 0; j < rt->n_listeners && !found; j++)
			if (same_endpoint(ep, &rt->listeners[j].ep)) {
				next[i] = rt->listeners[j];
				found = true;
			}
		if (found)
			continue;
		rc = open_listener(rt, fresh, ep, &next[i]);
		if (rc) {
			for (unsigned k = 0; k < i; k++)
				if (opened[k])
					close_listener(rt, &next[k]);
			return rc;
		}
		opened[i] = true;
	}
	return 0;
}

/* Read argv and the file again into fresh; its problems are logged. 0, -EINVAL, -ENOMEM. */
static int read_fresh(struct relay_runtime *rt, int argc, char *const argv[],
		      struct relay_config *fresh)
{
	char *text = NULL;
	size_t len = 0;
	FILE *diag = open_memstream(&text, &len);
	unsigned problems;

	if (!diag)
		return -ENOMEM;
	problems = relay_config_reload(&rt->cfg, argc, argv, fresh, diag);
	fclose(diag);
	log_lines(problems ? RELAY_LOG_ERROR : RELAY_LOG_WARN, "reload: ", text);
	free(text);
	if (problems)
		return -EINVAL;
	if (!rt->ops.idle_timeout && rt->cfg.idle_timeout_ms != fresh->idle_timeout_ms) {
		relay_log(RELAY_LOG_WARN, "reload: idle-timeout changes only at restart with "
					  "this engine; keeping the running value");
		fresh->idle_timeout_ms = rt->cfg.idle_timeout_ms;
	}
	if (!rt->ops.listener_add && !same_listeners(&rt->cfg, fresh)) {
		relay_log(RELAY_LOG_WARN, "reload: listen changes only at restart with this "
					  "engine; keeping the running listeners");
		memcpy(fresh->listen, rt->cfg.listen, sizeof(fresh->listen));
		fresh->n_listen = rt->cfg.n_listen;
	}
	return 0;
}

/* What a reload builds beside the running state before anything is swapped. */
struct next_state {
	struct relay_listener listeners[RELAY_MAX_LISTEN];
	bool opened[RELAY_MAX_LISTEN];
	struct relay_balancer *balancer;
	struct relay_health *health;
};

/* Balancer, listeners, health checker for fresh; on failure nothing is left open. */
static int build_next(struct relay_runtime *rt, const struct relay_config *fresh,
		      struct next_state *n)
{
	int rc;

	rc = make_balancer(fresh, rt->balancer, &n->balancer);
	if (!rc)
		rc = plan_listeners(rt, fresh, n->listeners, n->opened);
	if (rc)
		goto fail;
	rc = start_health(fresh, n->balancer, &n->health);
	if (!rc)
		return 0;
	for (unsigned k = 0; k < fresh->n_listen; k++)
		if (n->opened[k])
			close_listener(rt, &n->listeners[k]);
fail:
	relay_balancer_put(n->balancer);
	return rc;
}

/* Everything new is in hand: swap it in, then let go of what is gone. */
static void swap_in(struct relay_runtime *rt, const struct relay_config *fresh,
		    struct next_state *n)
{
	struct relay_log_config lc;
	struct relay_balancer *old;

	relay_runtime_log_config(fresh, &lc);
	if (relay_log_open(&lc))
		relay_log(RELAY_LOG_ERROR, "reload: access log %s: keeping the old one",
			  fresh->access_log_path);
	for (unsigned j = 0; j < rt->n_listeners; j++) {
		bool kept = false;

		for (unsigned i = 0; i < fresh->n_listen; i++)
			kept |= same_endpoint(&n->listeners[i].ep, &rt->listeners[j].ep);
		if (!kept)
			close_listener(rt, &rt->listeners[j]);
	}
	memcpy(rt->listeners, n->listeners, sizeof(n->listeners));
	rt->n_listeners = fresh->n_listen;
	relay_health_stop(rt->health);
	rt->health = n->health;
	pthread_mutex_lock(&rt->lock);
	old = rt->balancer;
	rt->balancer = n->balancer;
	settings_of(fresh, &rt->settings);
	pthread_mutex_unlock(&rt->lock);
	relay_balancer_put(old); /* freed with the last connection that holds it */
	relay_peer_limit_set_max(rt->peers, fresh->max_conns_per_ip);
	if (rt->cfg.idle_timeout_ms != fresh->idle_timeout_ms)
		rt->ops.idle_timeout(fresh->idle_timeout_ms, rt->ops.arg);
	rt->cfg = *fresh;
}

int relay_runtime_reload(struct relay_runtime *rt, int argc, char *const argv[])
{
	struct relay_config *fresh = malloc(sizeof(*fresh));
	struct next_state n = {0};
	int rc = fresh ? 0 : -ENOMEM;

	relay_notify_reloading();
	if (!rc)
		rc = read_fresh(rt, argc, argv, fresh);
	if (!rc)
		rc = build_next(rt, fresh, &n);
	if (!rc)
		swap_in(rt, fresh, &n);
	if (rc) {
		rt->failed_reloads++;
		relay_log(RELAY_LOG_ERROR, "reload failed (%s); the running configuration stays",
			  rc == -EINVAL	  ? "bad configuration"
			  : rc == -ENOENT ? "a name did not resolve"
					  : strerror(-rc));
	} else {
		rt->reloads++;
		relay_log(RELAY_LOG_INFO, "reloaded: %u listener%s, %u upstream%s", rt->n_listeners,
			  rt->n_listeners == 1 ? "" : "s", rt->cfg.n_upstream,
			  rt->cfg.n_upstream == 1 ? "" : "s");
	}
	if (rc)
		relay_notify_ready();
	else
		relay_notify_ready_status("%u listener%s, %u upstream%s (reloaded %u time%s)",
					  rt->n_listeners, rt->n_listeners == 1 ? "" : "s",
					  rt->cfg.n_upstream, rt->cfg.n_upstream == 1 ? "" : "s",
					  rt->reloads, rt->reloads == 1 ? "" : "s");
	free(fresh);
	return rc;
}

int relay_runtime_resolve(struct relay_runtime *rt)
{
	struct relay_balancer *nb, *old;
	int rc = make_balancer(&rt->cfg, rt->balancer, &nb);

	if (rc) {
		relay_log(RELAY_LOG_ERROR,
			  "resolving the upstreams again failed (%s); keeping the "
			  "addresses in use",
			  strerror(-rc));
		return rc;
	}
	if (rt->health) { /* the checker follows the new set */
		relay_health_stop(rt->health);
		rt->health = NULL;
		if (start_health(&rt->cfg, nb, &rt->health))
			relay_log(RELAY_LOG_ERROR, "health checks could not restart");
	}
	pthread_mutex_lock(&rt->lock);
	old = rt->balancer;
	rt->balancer = nb;
	pthread_mutex_unlock(&rt->lock);
	relay_balancer_put(old);
	relay_log(RELAY_LOG_INFO, "upstream names resolved again");
	return 0;
}

void relay_runtime_stop(struct relay_runtime *rt)
{
	for (unsigned i = 0; i < rt->n_listeners; i++)
		close_listener(rt, &rt->listeners[i]);
	rt->n_listeners = 0;
	relay_health_stop(rt->health);
	rt->health = NULL;
	relay_balancer_put(rt->balancer);
	rt->balancer = NULL;
	relay_peer_limit_destroy(rt->peers);
	rt->peers = NULL;
	relay_log_close();
	pthread_mutex_destroy(&rt->lock);
}
