/* SPDX-License-Identifier: MIT */
/*
 * peer_limit.c - --max-conns-per-ip: open connections counted per client IP address.
 *
 * A hash table from IP (4 bytes, or 16 for IPv6; v4-mapped IPv6 counts as its IPv4) to a
 * count. Accept calls acquire (false when the IP is at the limit: the relay closes the
 * connection and logs it, rate-limited), close calls release. An entry exists only while its
 * IP has connections, so memory follows open connections, never the number of addresses
 * ever seen (a scan of many sources costs nothing once they are gone).
 *
 * Threads: workers accept and close concurrently. The table is split into stripes, each its
 * own mutex and chains, picked by the hash, so workers rarely meet on one lock; an operation
 * is a hash, a lock and a short chain walk. The hash is keyed with a random seed per table,
 * so a client cannot aim many addresses at one chain.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ops.h"

#define STRIPES		   64
#define BUCKETS_PER_STRIPE 64

struct entry {
	struct entry *next;
	uint8_t ip[16];
	uint8_t len;
	unsigned count;
};

struct stripe {
	pthread_mutex_t lock;
	struct entry *bucket[BUCKETS_PER_STRIPE];
	size_t entries;
} __attribute__((aligned(64)));

struct relay_peer_limit {
	atomic_uint max;
	uint64_t seed;
	struct stripe s[STRIPES];
};

int relay_peer_limit_create(unsigned max, struct relay_peer_limit **out)
{
	struct relay_peer_limit *pl;

	if (!out)
		return -EINVAL;
	if (posix_memalign((void **)&pl, 64, sizeof(*pl)))
		return -ENOMEM;
	memset(pl, 0, sizeof(*pl));
	atomic_init(&pl->max, max);
	if (getrandom(&pl->seed, sizeof(pl->seed), GRND_NONBLOCK) != sizeof(pl->seed))
		pl->seed = (uint64_t)(uintptr_t)pl * 0x9E3779B97F4A7C15ull;
	for (unsigned i = 0; i < STRIPES; i++)
		pthread_mutex_init(&pl->s[i].lock, NULL);
	*out = pl;
	return 0;
}

void relay_peer_limit_destroy(struct relay_peer_limit *pl)
{
	if (!pl)
		return;
	for (unsigned i = 0; i < STRIPES; i++) {
		for (unsigned j = 0; j < BUCKETS_PER_STRIPE; j++)
			for (struct entry *e = pl->s[i].bucket[j], *next; e; e = next) {
				next = e->next;
				free(e);
			}
		pthread_mutex_destroy(&pl->s[i].lock);
	}
	free(pl);
}

void relay_peer_limit_set_max(struct relay_peer_limit *pl, unsigned max)
{
	atomic_store_explicit(&pl->max, max, memory_order_relaxed);
}

/* A seeded 64-bit mix of the IP bytes (splitmix64 finaliser per 8 bytes). */
static uint64_t hash(const struct relay_peer_limit *pl, const uint8_t *ip, size_t len)
{
	uint64_t h = pl->seed ^ len;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = 0;

		memcpy(&w, ip + i, len - i < 8 ? len - i : 8);
		h ^= w;
		h += 0x9E3779B97F4A7C15ull;
		h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
		h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
		h ^= h >> 31;
	}
	return h;
}

/* The stripe (locked by the caller) and the chain head for ip. */
static struct entry **chain(struct relay_peer_limit *pl, const uint8_t *ip, size_t len,
			    struct stripe **st)
{
	uint64_t h = hash(pl, ip, len);

	*st = &pl->s[h % STRIPES];
	return &(*st)->bucket[(h / STRIPES) % BUCKETS_PER_STRIPE];
}

static struct entry **find(struct entry **head, const uint8_t *ip, size_t len)
{
	for (; *head; head = &(*head)->next)
		if ((*head)->len == len && !memcmp((*head)->ip, ip, len))
			return head;
	return NULL;
}

bool relay_peer_limit_acquire(struct relay_peer_limit *pl, const struct sockaddr *sa)
{
	unsigned max = atomic_load_explicit(&pl->max, memory_order_relaxed);
	uint8_t ip[16];
	size_t len = relay_addr_ip(sa, ip);
	struct stripe *st;
	struct entry **head, **at, *e;
	bool ok = true;

	if (!len)
		return true; /* not an IP connection: nothing to count it under */
	head = chain(pl, ip, len, &st);
	pthread_mutex_lock(&st->lock);
	at = find(head, ip, len);
	if (at) {
		e = *at;
		if (max && e->count >= max)
			ok = false;
		else
			e->count++;
	} else {
		e = calloc(1, sizeof(*e));
		if (!e) {
			ok = false; /* out of memory: refuse rather than count wrong */
		} else {
			memcpy(e->ip, ip, len);
			e->len = (uint8_t)len;
			e->count = 1;
			e->next = *head;
			*head = e;
			st->entries++;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return ok;
}

void relay_peer_limit_release(struct relay_peer_limit *pl, const struct sockaddr *sa)
{
	uint8_t ip[16];
	size_t len = relay_addr_ip(sa, ip);
	struct stripe *st;
	struct entry **head, **at;

	if (!len)
		return;
	head = chain(pl, ip, len, &st);
	pthread_mutex_lock(&st->lock);
	at = find(head, ip, len);
	if (at && --(*at)->count == 0) {
		struct entry *e = *at;

		*at = e->next;
		free(e);
		st->entries--;
	}
	pthread_mutex_unlock(&st->lock);
}

unsigned relay_peer_limit_count(struct relay_peer_limit *pl, const struct sockaddr *sa)
{
	uint8_t ip[16];
	size_t len = relay_addr_ip(sa, ip);
	struct stripe *st;
	struct entry **head, **at;
	unsigned n = 0;

	if (!len)
		return 0;
	head = chain(pl, ip, len, &st);
	pthread_mutex_lock(&st->lock);
	at = find(head, ip, len);
	if (at)
		n = (*at)->count;
	pthread_mutex_unlock(&st->lock);
	return n;
}

size_t relay_peer_limit_ips(struct relay_peer_limit *pl)
{
	size_t n = 0;

	for (unsigned i = 0; i < STRIPES; i++) {
		pthread_mutex_lock(&pl->s[i].lock);
		n += pl->s[i].entries;
		pthread_mutex_unlock(&pl->s[i].lock);
	}
	return n;
}
