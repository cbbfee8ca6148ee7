/* Native CPU kernel of a SAL phase (neuroplastic.sal.native has the Python side and the equations). Optional: built
 * by setup.py when a C compiler is present; without it the library takes the torch route.
 *
 * One call runs `steps` steps of a chain of populations 0 .. L (forward projections W_l: l-1 -> l, feedback
 * projections B_l^T: l -> l-1) for R networks, event-driven: the PSPs are rectangular, so a unit's input changes
 * only where one of its presynaptic PSPs starts or ends, and the potentials u = b + sum_pre P z are kept up to date by
 * adding (PSP on) or subtracting (PSP off) the presynaptic unit's row of fan-out weights. At the same time it sums
 * the all-pairs (or nearest-spike) SAL terms of every feedback projection from the ages of each unit's recent spikes.
 *
 * Random numbers: every network has eight xoshiro128++ lanes of its own (_stream.h), seeded from the call's key and
 * its index and drawn in a fixed order (step by step, unit g from lane g mod 8), so the draws do not depend on the
 * order of the networks' work or the number of threads.
 *
 * All arrays are C-contiguous float32 (int16 countdowns and spike ages); pointers arrive as Python ints from
 * tensors the caller owns and keeps alive. The networks run in two fixed slices, the phase's two halves (each half has
 * sums of its own), on up to two threads of torch's OpenMP team (_team.h); within a slice in groups of GROUP, each
 * group step by step. Every value is summed in one order whatever the number of threads, so the result does not
 * depend on it.
 *
 * A group keeps its spikes and traces of `span` steps and adds their SAL sums after the last of them, sorted by unit
 * and then by step and network: every sum is added in the order of span 1 (so the span does not change a result by a
 * bit; tested), but each row of a sum is read and written once per span of steps instead of once per step (a half's
 * sums are megabytes: they do not stay in the core's caches).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_stream.h"
#include "../_team.h"

#define NATIVE_ABI 7
#define MAX_LAYERS 16
#define GROUP 32 /* networks run together, step by step */
#define SPAN_BYTES (1 << 20) /* a group's traces of a span of steps, at most (span 0: the most steps that fit, <= 8) */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CLONES
#endif

/* y += a x */
CLONES static void axpy(float *restrict y, const float *restrict x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        y[i] += a * x[i];
}

/* y += x */
CLONES static void add(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        y[i] += x[i];
}

typedef struct {
    int64_t steps, nets, layers, split, m, cut, nearest, refractory, psp_above;
    float log_tau;
    int64_t size[MAX_LAYERS + 1], start[MAX_LAYERS + 2], total; /* start[L + 1] = total */
    const float *fwd[MAX_LAYERS]; /* layer l (1..L): W_l^T [n_{l-1}, n_l], row j = unit j's fan-out */
    const float *back[MAX_LAYERS]; /* layer l: B_l [n_l, n_{l-1}], row k = unit k's feedback fan-out */
    float *hebb[MAX_LAYERS][2]; /* layer l, half h: [n_l, n_{l-1}], += x_{l-1}(t) at a spike of unit k of layer l */
    float *anti[MAX_LAYERS][2]; /* layer l, half h: [n_{l-1}, n_l], += x_l(t) at a spike of unit i of layer l-1 */
    const float *table; /* [cut + 2]: 0, k(1) .. k(cut), 0 */
    xoshiro8_t *gen; /* [R]: network r's generators (seed_net) */
    float *u, *fired; /* [R, total] */
    int16_t *count; /* [R, total] */
    float *z; /* [R, total] */
    int16_t *ages; /* [R, m, total]: steps since the unit's last m spikes, newest first, at most cut + 1 (none) */
} phase_t;

/* one step older: every spike age + 1, at most cut + 1 (beyond the window) */
CLONES static void age(int16_t *restrict a, int64_t n, int16_t none)
{
    for (int64_t i = 0; i < n; ++i)
        a[i] = a[i] < none ? a[i] + 1 : none;
}

/* x[j] = sum over unit j's recent spikes (slots q < m, ages a_q[j] >= 1) of k(a_q[j]); table[d] = k(d) for
 * d = 1 .. cut, 0 at cut + 1 */
CLONES static void trace(const int16_t *restrict a, int64_t m, int64_t stride, int64_t n, const float *restrict table,
                         float *restrict x)
{
    for (int64_t j = 0; j < n; ++j)
        x[j] = table[a[j]];
    for (int64_t q = 1; q < m; ++q)
        for (int64_t j = 0; j < n; ++j)
            x[j] += table[a[q * stride + j]];
}

/* one network's draws: t[g] = u_g (1 + e^{ln tau_ref - u[g]}), u_g the next number of lane g mod 8 of the network's
 * generators (_stream.h; every unit draws, the refractory ones' draws unused, so the loops vectorise); then a unit
 * free at this step (its countdown reaching 0) fires if t[g] < 1, a spike with probability sigmoid(u - ln tau_ref).
 * A spike restarts the countdown at refractory + 1; the PSP is on while the countdown is above `above`. flag[g]: 1 for
 * a spike, + 2 where the PSP starts or ends. t has room for n rounded up to 8. */
CLONES static void draws(const float *restrict u, float *restrict t, int64_t n, xoshiro8_t *restrict gen,
                         float log_tau)
{
    xoshiro8_uniforms(gen, t, n);
    for (int64_t g = 0; g < n; ++g)
        t[g] *= 1.0f + exp_approx(log_tau - u[g]);
}

/* (the second loop of a network's draws, above) */
CLONES static void fire(const float *restrict t, int16_t *restrict cnt, float *restrict z, uint8_t *restrict flag,
                        int64_t n, int16_t restart, int16_t above)
{
    for (int64_t g = 0; g < n; ++g) {
        int16_t c0 = cnt[g];
        int16_t c = (int16_t)(c0 - (c0 > 0));
        int16_t f = (int16_t)((c == 0) & (t[g] < 1.0f));
        c = f ? restart : c;
        cnt[g] = c;
        float was = z[g], on = c > above ? 1.0f : 0.0f;
        flag[g] = (uint8_t)(f | ((on != was) << 1));
        z[g] = on;
    }
}

/* the flags of 64 units (fire) as two bit masks: bit i of sp for a spike of unit i, of ev for a PSP edge */
CLONES static void masks(const uint8_t *restrict flag, uint64_t *sp, uint64_t *ev)
{
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 64; ++i) {
        a |= (uint64_t)(flag[i] & 1) << i;
        b |= (uint64_t)((flag[i] >> 1) & 1) << i;
    }
    *sp = a;
    *ev = b;
}

/* network r's generators for a call with key `key`: lane word j of network r from SplitMix64 of key + (32 r + j + 1)
 * times the golden ratio (_stream.h), so every network of every call has its own numbers */
static void seed_net(xoshiro8_t *gen, uint64_t key, int64_t r)
{
    xoshiro8_seed(gen, key + (uint64_t)r * 32 * 0x9E3779B97F4A7C15ULL);
}

/* a step of network r: its spikes from the potentials of the PSPs so far, appended to spikes (unit g, slot: where its
 * traces are in the group's buffer), with the traces they pair with (x, ΣN + 8 floats, from the spike ages before this
 * step's spikes enter), and its PSPs that start or end appended to events (unit g, network r, on/off); returns the
 * number of events appended */
static int64_t step_net(const phase_t *p, int64_t r, int32_t slot, float *x, uint8_t *flags, int32_t *spikes,
                        int64_t *n_spikes, int32_t *events)
{
    int64_t tot = p->total, L = p->layers;
    float *u = p->u + r * tot, *z = p->z + r * tot, *fired = p->fired + r * tot;
    int16_t *cnt = p->count + r * tot;
    int16_t *ages = p->ages + r * tot * p->m;
    age(ages, tot * p->m, (int16_t)(p->cut + 1));
    /* the step's draws (into x, free until the traces), then its spikes and PSP starts and ends */
    draws(u, x, tot, p->gen + r, p->log_tau);
    fire(x, cnt, z, flags, tot, (int16_t)(p->refractory + 1), (int16_t)p->psp_above);
    int64_t n_spiked = 0, n_events = 0;
    int32_t *spiked = spikes + 2 * *n_spikes;
    int any[MAX_LAYERS + 1] = {0};
    for (int64_t g0 = 0, l = 0; g0 < tot; g0 += 64) { /* 64 units at a time, their flags as bit masks */
        uint64_t sp, ev;
        masks(flags + g0, &sp, &ev);
        for (; sp; sp &= sp - 1) { /* the spikes, in unit order */
            int64_t g = g0 + __builtin_ctzll(sp);
            spiked[2 * n_spiked] = (int32_t)g;
            spiked[2 * n_spiked + 1] = slot;
            ++n_spiked;
            fired[g] += 1.0f;
            while (g >= p->start[l + 1])
                ++l;
            any[l] = 1;
        }
        for (; ev; ev &= ev - 1) { /* the PSPs that start or end, in unit order */
            int64_t g = g0 + __builtin_ctzll(ev);
            events[2 * n_events] = (int32_t)g;
            events[2 * n_events + 1] = (int32_t)(z[g] > 0.0f ? r + 1 : -r - 1);
            ++n_events;
        }
    }
    *n_spikes += n_spiked;
    /* the traces of the layers a spike joins through a feedback projection */
    for (int64_t l = 0; l <= L; ++l)
        if ((l > 0 && any[l - 1]) || (l < L && any[l + 1]))
            trace(ages + p->start[l], p->nearest ? 1 : p->m, tot, p->size[l], p->table, x + p->start[l]);
    for (int64_t i = 0; i < n_spiked; ++i) { /* the spike enters slot 0, the older ones move down */
        int16_t *a = ages + spiked[2 * i];
        for (int64_t q = p->m - 1; q > 0; --q)
            a[q * tot] = a[(q - 1) * tot];
        a[0] = 0;
    }
    return n_events;
}

/* stable counting sort of n (unit, network) pairs by unit: order lists their indices, unit by unit */
static void sort_by_unit(const int32_t *pairs, int64_t n, int64_t tot, int32_t *first, int32_t *order)
{
    memset(first, 0, (size_t)(tot + 1) * sizeof *first);
    for (int64_t i = 0; i < n; ++i)
        ++first[pairs[2 * i] + 1];
    for (int64_t g = 0; g < tot; ++g)
        first[g + 1] += first[g];
    for (int64_t i = 0; i < n; ++i)
        order[first[pairs[2 * i]]++] = (int32_t)i;
}

/* SAL: each spike of a group's span of steps (its traces at slot (step - first step) * group + (network - r0) of x,
 * ΣN + 8 floats apart) pairs with the earlier spikes of the layers it joins through a feedback projection. Sorted by
 * unit (stable: then by step and network), so each row of a sum is read once per span for every spike of its unit, in
 * the order in which one step after another, one network after another, would add them. */
static void sal_sums(const phase_t *p, int half, const int32_t *spikes, int64_t n, const float *x, int32_t *first,
                     int32_t *order)
{
    int64_t tot = p->total, L = p->layers;
    sort_by_unit(spikes, n, tot, first, order);
    for (int64_t i = 0, l = 0; i < n; ++i) {
        int64_t g = spikes[2 * order[i]], slot = spikes[2 * order[i] + 1];
        const float *xr = x + slot * (tot + 8);
        while (g >= p->start[l + 1]) /* units ascend */
            ++l;
        int64_t k = g - p->start[l];
        if (l > 0) /* pre of feedback projection l: pairs with layer l-1's earlier spikes (+A) */
            add(p->hebb[l][half] + k * p->size[l - 1], xr + p->start[l - 1], p->size[l - 1]);
        if (l < L) /* post of feedback projection l+1: pairs with layer l+1's earlier spikes (-A) */
            add(p->anti[l + 1][half] + k * p->size[l + 1], xr + p->start[l + 1], p->size[l + 1]);
    }
}

/* the potentials of the next step: every PSP that started adds its unit's fan-out rows to its network's potentials,
 * every one that ended takes them away; the events sorted by unit (counting sort), so each row is read once per
 * step for all the networks that need it */
static void apply_events(const phase_t *p, const int32_t *events, int64_t n_events, int32_t *first, int32_t *order)
{
    int64_t tot = p->total, L = p->layers;
    sort_by_unit(events, n_events, tot, first, order);
    for (int64_t i = 0, l = 0; i < n_events; ++i) {
        int64_t g = events[2 * order[i]], e = events[2 * order[i] + 1];
        int64_t r = (e > 0 ? e : -e) - 1;
        float sign = e > 0 ? 1.0f : -1.0f, *u = p->u + r * tot;
        l = 0;
        while (g >= p->start[l + 1])
            ++l;
        int64_t k = g - p->start[l];
        if (l < L)
            axpy(u + p->start[l + 1], p->fwd[l + 1] + k * p->size[l + 1], sign, p->size[l + 1]);
        if (l > 0)
            axpy(u + p->start[l - 1], p->back[l] + k * p->size[l - 1], sign, p->size[l - 1]);
    }
}

/* one slice of the networks, [lo, hi), with its own scratch buffers */
typedef struct {
    int64_t lo, hi;
    int32_t *spikes, *events, *first, *order;
    float *x; /* the group's traces (and draws) of a span of steps, ΣN + 8 floats per network and step */
    uint8_t *flags;
} slice_t;

typedef struct {
    const phase_t *p;
    int64_t span; /* steps whose SAL sums a group adds together */
    slice_t slice[2];
} run_t;

/* the slices tid, tid + nt, ... of a run: every step of each of their groups of networks */
static void run_task(void *ctx, int tid, int nt)
{
    run_t *job = ctx;
    const phase_t *p = job->p;
    for (int k = tid; k < 2; k += nt) {
        slice_t *c = &job->slice[k];
        for (int64_t r0 = c->lo; r0 < c->hi; r0 += GROUP) /* a group's potentials stay in the core's cache */
            for (int64_t s0 = 0; s0 < p->steps; s0 += job->span) {
                int64_t n_spikes = 0;
                for (int64_t s = s0; s < p->steps && s < s0 + job->span; ++s) {
                    int64_t n_events = 0;
                    for (int64_t r = r0; r < c->hi && r < r0 + GROUP; ++r) {
                        int32_t slot = (int32_t)((s - s0) * GROUP + r - r0);
                        n_events += step_net(p, r, slot, c->x + slot * (p->total + 8), c->flags, c->spikes,
                                             &n_spikes, c->events + 2 * n_events);
                    }
                    apply_events(p, c->events, n_events, c->first, c->order);
                }
                sal_sums(p, r0 >= p->split, c->spikes, n_spikes, c->x, c->first, c->order);
            }
    }
}

static PyObject *py_run(PyObject *self, PyObject *args)
{
    (void)self;
    phase_t p;
    int threads;
    long long span;
    unsigned long long sizes, ptrs, table, key, u, fired, count, z, ages;
    if (!PyArg_ParseTuple(args, "LLLLLLLLLfKKKKKKKKKiL", &p.steps, &p.nets, &p.layers, &p.split, &p.m, &p.cut,
                          &p.nearest, &p.refractory, &p.psp_above, &p.log_tau, &sizes, &ptrs, &table, &key, &u,
                          &fired, &count, &z, &ages, &threads, &span))
        return NULL;
    if (p.layers < 1 || p.layers > MAX_LAYERS || p.m < 1 || p.cut < 1 || p.cut > 30000 || p.split < 0
        || p.split > p.nets || span < 0 || span > 1024) {
        PyErr_SetString(PyExc_ValueError, "sal native: bad shapes");
        return NULL;
    }
    const int64_t *sz = (const int64_t *)(uintptr_t)sizes;
    const unsigned long long *pt = (const unsigned long long *)(uintptr_t)ptrs;
    p.total = 0;
    for (int64_t l = 0; l <= p.layers; ++l) {
        p.size[l] = sz[l];
        p.start[l] = p.total;
        p.total += sz[l];
    }
    p.start[p.layers + 1] = p.total;
    int64_t L = p.layers;
    /* ptrs: fwd_1..L, back_1..L, hebb_1..L (half 0), hebb (half 1), anti (half 0), anti (half 1) */
    for (int64_t l = 1; l <= L; ++l) {
        p.fwd[l] = (const float *)(uintptr_t)pt[l - 1];
        p.back[l] = (const float *)(uintptr_t)pt[L + l - 1];
        p.hebb[l][0] = (float *)(uintptr_t)pt[2 * L + l - 1];
        p.hebb[l][1] = (float *)(uintptr_t)pt[3 * L + l - 1];
        p.anti[l][0] = (float *)(uintptr_t)pt[4 * L + l - 1];
        p.anti[l][1] = (float *)(uintptr_t)pt[5 * L + l - 1];
    }
    p.table = (const float *)(uintptr_t)table;
    p.u = (float *)(uintptr_t)u;
    p.fired = (float *)(uintptr_t)fired;
    p.count = (int16_t *)(uintptr_t)count;
    p.z = (float *)(uintptr_t)z;
    p.ages = (int16_t *)(uintptr_t)ages;
    size_t tot = (size_t)p.total;
    if (span == 0) { /* half of a 2 MB L2 cache */
        span = SPAN_BYTES / (GROUP * (p.total + 8) * 4);
        span = span < 1 ? 1 : span > 8 ? 8 : span;
    }
    run_t job = {&p, span, {{.lo = 0, .hi = p.split}, {.lo = p.split, .hi = p.nets}}};
    p.gen = aligned_alloc(64, (size_t)p.nets * sizeof *p.gen);
    int ok = p.gen != NULL;
    for (int64_t r = 0; ok && r < p.nets; ++r)
        seed_net(p.gen + r, (uint64_t)key, r);
    for (int k = 0; k < 2; ++k) { /* a group's events: at most one per unit and network */
        slice_t *c = &job.slice[k];
        size_t span_n = (size_t)span * GROUP; /* a span's (step, network) pairs */
        c->spikes = malloc(2 * tot * span_n * sizeof *c->spikes);
        c->events = malloc(2 * tot * GROUP * sizeof *c->events);
        c->first = malloc((tot + 1) * sizeof *c->first);
        c->order = malloc(tot * span_n * sizeof *c->order);
        c->x = malloc((tot + 8) * span_n * sizeof *c->x);
        c->flags = calloc(tot + 64, 1); /* read 64 at a time: the tail stays 0 */
        ok = ok && c->spikes && c->events && c->first && c->order && c->x && c->flags;
    }
    if (ok) {
        int nt = threads < 1 ? 1 : threads > 2 ? 2 : threads;
        omp_found();
        Py_BEGIN_ALLOW_THREADS
        team_run(run_task, &job, nt);
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < 2; ++k) {
        free(job.slice[k].spikes);
        free(job.slice[k].events);
        free(job.slice[k].first);
        free(job.slice[k].order);
        free(job.slice[k].x);
        free(job.slice[k].flags);
    }
    free(p.gen);
    if (!ok)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* uniforms(key, steps, nets, units, out): out [steps, nets, units] (float32), the numbers run() compares with the
 * firing probabilities in a call with key `key` */
static PyObject *py_uniforms(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long key, out;
    long long steps, nets, units;
    if (!PyArg_ParseTuple(args, "KLLLK", &key, &steps, &nets, &units, &out))
        return NULL;
    if (steps < 0 || nets < 0 || units < 0) {
        PyErr_SetString(PyExc_ValueError, "sal native: bad shapes");
        return NULL;
    }
    float *x = (float *)(uintptr_t)out, *t = malloc(((size_t)units + 8) * sizeof *t);
    xoshiro8_t *gen = aligned_alloc(64, sizeof *gen);
    if (!t || !gen) {
        free(t);
        free(gen);
        return PyErr_NoMemory();
    }
    for (int64_t r = 0; r < nets; ++r) {
        seed_net(gen, (uint64_t)key, r);
        for (int64_t s = 0; s < steps; ++s) {
            xoshiro8_uniforms(gen, t, units); /* as draws() */
            memcpy(x + (s * nets + r) * units, t, (size_t)units * sizeof *t);
        }
    }
    free(t);
    free(gen);
    Py_RETURN_NONE;
}

/* ---- the dense bfloat16 route (neuroplastic.sal.native.DensePhase): torch computes a step's potentials as
 * bfloat16 products (the chain is bipartite: one product for the even populations, one for the odd), and this draws
 * the step's spikes as draws() and fire() above, from bfloat16 potentials, with bfloat16 PSPs and spikes (1.0 is
 * 0x3F80), keeps the ages of each unit's last m spikes and writes the SAL terms y of the row c steps back:
 *
 *   y_j(i) = sum over unit j's spikes at steps s, 0 < |s - i| <= c, of  +k(s - i) (s > i)  or  -k(i - s) (s < i)
 *
 * so that a feedback projection's all-pairs update over the rows i is sum_i s_post(i)^T y_pre(i) (one product per
 * chunk of rows, in torch). A pair counts in the block of its later spike: an anti-causal term (s > i) only where s is
 * in the block (its age at most `e`, the steps of the block so far), a causal one (s < i) only where row i is in it
 * (`causal`). The row lies `o` steps before the newest spikes: o = c while stepping; at a block's end its last c rows
 * are written with o = c - 1 .. 0 (no step: fire = 0). */
static inline float bf16_float(uint16_t h)
{
    union { uint32_t i; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

static inline uint16_t float_bf16(float x) /* round to nearest even (no NaNs here) */
{
    union { float f; uint32_t i; } v = {x};
    return (uint16_t)((v.i + 0x7FFFu + ((v.i >> 16) & 1u)) >> 16);
}

CLONES static void fire_bf16(const uint16_t *restrict u, float *restrict t, int16_t *restrict cnt,
                             uint16_t *restrict z, uint16_t *restrict out, float *restrict fired, int64_t n,
                             xoshiro8_t *restrict gen, float log_tau, int16_t restart, int16_t above)
{
    xoshiro8_uniforms(gen, t, n);
    for (int64_t g = 0; g < n; ++g) {
        float q = t[g] * (1.0f + exp_approx(log_tau - bf16_float(u[g])));
        int16_t c0 = cnt[g];
        int16_t c = (int16_t)(c0 - (c0 > 0));
        int16_t f = (int16_t)((c == 0) & (q < 1.0f));
        c = f ? restart : c;
        cnt[g] = c;
        z[g] = c > above ? 0x3F80 : 0;
        out[g] = f ? 0x3F80 : 0;
        fired[g] += (float)f;
    }
}

/* every spike age one step older (at most none), then the step's spikes (out) enter slot 0, the older ones move down */
CLONES static void age_bf16(int16_t *restrict a, const uint16_t *restrict out, int64_t m, int64_t n, int16_t none)
{
    for (int64_t q = 0; q < m; ++q)
        age(a + q * n, n, none);
    for (int64_t q = m - 1; q > 0; --q)
        for (int64_t g = 0; g < n; ++g)
            a[q * n + g] = out[g] ? a[(q - 1) * n + g] : a[q * n + g];
    for (int64_t g = 0; g < n; ++g)
        a[g] = out[g] ? 0 : a[g];
}

/* y[g] = sum over slots q of tab[a_q[g]] (tab: the row's terms by spike age, 0 at none), rounded to bfloat16 */
CLONES static void terms_bf16(const int16_t *restrict a, int64_t m, int64_t stride, int64_t n,
                              const float *restrict tab, uint16_t *restrict y)
{
    for (int64_t g = 0; g < n; ++g) {
        float v = tab[a[g]];
        for (int64_t q = 1; q < m; ++q)
            v += tab[a[q * stride + g]];
        y[g] = float_bf16(v);
    }
}

typedef struct {
    int64_t nets, split, n[2], yfrom[2], m, fire, refractory, psp_above;
    int16_t none;
    float log_tau;
    const uint16_t *u[2];
    int16_t *count[2], *ages[2];
    uint16_t *z[2], *s[2][2], *y[2][2]; /* s, y: [segment][half] -> [R_h, n] and [R_h, n - yfrom] (y: NULL for none) */
    /* ages: [R, m, n - yfrom], the spike ages of the units with terms */
    float *fired[2];
    const float *tab;
    xoshiro8_t *gen;
    float *scratch[2]; /* per thread: a segment's draws */
} dense_t;

/* the networks of thread tid (the first half of them on thread 0, the rest on 1): the even segment then the odd */
static void dense_task(void *ctx, int tid, int nt)
{
    const dense_t *d = ctx;
    float *t = d->scratch[tid];
    int64_t half = (d->nets + 1) / 2, lo = nt > 1 ? tid * half : 0, hi = nt > 1 && tid == 0 ? half : d->nets;
    for (int64_t r = lo; r < hi; ++r) {
        int h = r >= d->split;
        int64_t rh = r - (h ? d->split : 0);
        for (int k = 0; k < 2; ++k) {
            int64_t n = d->n[k], o = r * n;
            int64_t f0 = d->yfrom[k], ny = n - f0; /* the units with terms (pre of a feedback projection) */
            int16_t *ages = d->ages[k] + r * ny * d->m;
            if (d->fire) {
                uint16_t *out = d->s[k][h] + rh * n;
                fire_bf16(d->u[k] + o, t, d->count[k] + o, d->z[k] + o, out, d->fired[k] + o, n, d->gen + r,
                          d->log_tau, (int16_t)(d->refractory + 1), (int16_t)d->psp_above);
                if (ny > 0)
                    age_bf16(ages, out + f0, d->m, ny, d->none);
            }
            if (d->y[k][h] && ny > 0)
                terms_bf16(ages, d->m, ny, ny, d->tab, d->y[k][h] + rh * ny);
        }
    }
}

/* dense_step(nets, split, n_even, n_odd, yfrom_even, yfrom_odd, m, cut, fire, refractory, psp_above, log_tau,
 * kernel, o, e, causal, u_even, u_odd, ptrs, gen, threads): a step (fire = 1) or a row of terms only (fire = 0).
 * kernel: k(1..cut) (float32); u_even, u_odd: the step's potentials ([nets, n], bfloat16); ptrs (int64 [16]): per
 * segment count, z, fired, ages (of the units from yfrom on), then s and y of both halves (0: no terms) */
static PyObject *py_dense_step(PyObject *self, PyObject *args)
{
    (void)self;
    dense_t d;
    long long cut, o, e;
    int causal, threads;
    unsigned long long kernel, u_even, u_odd, ptrs, gen;
    if (!PyArg_ParseTuple(args, "LLLLLLLLLLLfKLLiKKKKi", &d.nets, &d.split, &d.n[0], &d.n[1], &d.yfrom[0],
                          &d.yfrom[1], &d.m, &cut, &d.fire, &d.refractory, &d.psp_above, &d.log_tau, &kernel, &o, &e,
                          &causal, &u_even, &u_odd, &ptrs, &gen, &threads))
        return NULL;
    if (d.nets < 1 || d.n[0] < 1 || d.n[1] < 1 || d.m < 1 || cut < 1 || cut > 10000 || o < 0 || o > cut
        || d.split < 0 || d.split > d.nets) {
        PyErr_SetString(PyExc_ValueError, "sal native: bad shapes");
        return NULL;
    }
    const unsigned long long *pt = (const unsigned long long *)(uintptr_t)ptrs;
    d.u[0] = (const uint16_t *)(uintptr_t)u_even;
    d.u[1] = (const uint16_t *)(uintptr_t)u_odd;
    for (int k = 0; k < 2; ++k) {
        const unsigned long long *q = pt + 8 * k;
        d.count[k] = (int16_t *)(uintptr_t)q[0];
        d.z[k] = (uint16_t *)(uintptr_t)q[1];
        d.fired[k] = (float *)(uintptr_t)q[2];
        d.ages[k] = (int16_t *)(uintptr_t)q[3];
        for (int h = 0; h < 2; ++h) {
            d.s[k][h] = (uint16_t *)(uintptr_t)q[4 + h];
            d.y[k][h] = (uint16_t *)(uintptr_t)q[6 + h];
        }
    }
    d.gen = (xoshiro8_t *)(uintptr_t)gen;
    d.none = (int16_t)(2 * cut + 1);
    /* the row's terms by spike age a (the spike o - a steps after the row): +k(o - a) for a < o, if a <= e; -k(a - o)
     * for o < a <= o + cut, if causal; 0 otherwise (a = o: the row's own step; a = none: no spike) */
    const float *k = (const float *)(uintptr_t)kernel;
    float *tab = malloc((size_t)(2 * cut + 2) * sizeof *tab);
    int64_t most = (d.n[0] > d.n[1] ? d.n[0] : d.n[1]) + 8;
    d.scratch[0] = malloc((size_t)most * sizeof(float));
    d.scratch[1] = malloc((size_t)most * sizeof(float));
    int ok = tab && d.scratch[0] && d.scratch[1];
    if (ok) {
        for (int64_t a = 0; a <= 2 * cut + 1; ++a)
            tab[a] = a < o ? (a <= e ? k[o - a - 1] : 0.0f) : (a > o && a - o <= cut && causal ? -k[a - o - 1] : 0.0f);
        d.tab = tab;
        int nt = threads < 1 ? 1 : threads > 2 ? 2 : threads;
        omp_found();
        Py_BEGIN_ALLOW_THREADS
        team_run(dense_task, &d, nt);
        Py_END_ALLOW_THREADS
    }
    free(tab);
    free(d.scratch[0]);
    free(d.scratch[1]);
    if (!ok)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* dense_seed(key, nets, gen): every network's lanes as seed_net seeds them for a call with key `key` (gen: nets x
 * 128 bytes, 32-byte aligned) */
static PyObject *py_dense_seed(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long key, gen;
    long long nets;
    if (!PyArg_ParseTuple(args, "KLK", &key, &nets, &gen))
        return NULL;
    if ((gen & 31) != 0 || nets < 1) {
        PyErr_SetString(PyExc_ValueError, "sal native: bad generator buffer");
        return NULL;
    }
    for (int64_t r = 0; r < nets; ++r)
        seed_net((xoshiro8_t *)(uintptr_t)gen + r, (uint64_t)key, r);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, "Run a chunk of a SAL phase (see neuroplastic.sal.native)."},
    {"uniforms", py_uniforms, METH_VARARGS,
     "uniforms(key, steps, nets, units, out): the numbers run() draws in a call with this key (float32)"},
    {"dense_step", py_dense_step, METH_VARARGS, "One step's spikes of the dense bfloat16 route (DensePhase)."},
    {"dense_seed", py_dense_seed, METH_VARARGS, "Seed the dense route's generators (DensePhase)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernel of a SAL phase.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", NATIVE_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
