/* Native CPU kernel of a SAL phase (neuroplastic.sal.native has the Python side and the equations). Optional: built
 * by setup.py when a C compiler is present; without it the library takes the torch route.
 *
 * One call runs `steps` steps of a chain of populations 0 .. L (forward projections W_l: l-1 -> l, feedback
 * projections B_l^T: l -> l-1) for R networks, event-driven: the PSPs are rectangular, so a unit's input changes
 * only where one of its presynaptic PSPs starts or ends, and the potentials u = b + sum_pre P z are kept up to date by
 * adding (PSP on) or subtracting (PSP off) the presynaptic unit's row of fan-out weights. At the same time it sums
 * the all-pairs (or nearest-spike) SAL terms of every feedback projection from the ages of each unit's recent spikes.
 *
 * All arrays are C-contiguous float32 (int16 countdowns and spike ages); pointers arrive as Python ints from
 * tensors the caller owns and keeps alive. The networks run in two fixed slices, the phase's two halves (each half has
 * sums of its own), on up to two threads of torch's OpenMP team (_team.h); within a slice in groups of GROUP, each
 * group step by step. Every value is summed in one order whatever the number of threads, so the result does not
 * depend on it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_team.h"

#define NATIVE_ABI 3
#define MAX_LAYERS 16
#define GROUP 16 /* networks run together, step by step */

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
    const float *uniforms; /* [steps, R, total] */
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

/* step s of network r: its spikes from the potentials of the PSPs so far, its SAL sums, and its PSPs that start or
 * end appended to events (unit g, network r, on/off); returns the number of events appended */
static int64_t step_net(const phase_t *p, int64_t s, int64_t r, int32_t *spiked, int32_t *events, float *xbuf)
{
    int64_t tot = p->total, L = p->layers;
    float *u = p->u + r * tot, *z = p->z + r * tot, *fired = p->fired + r * tot;
    int16_t *cnt = p->count + r * tot;
    int16_t *ages = p->ages + r * tot * p->m;
    const float *uni = p->uniforms + (s * p->nets + r) * tot;
    age(ages, tot * p->m, (int16_t)(p->cut + 1));
    int half = r >= p->split;
    int64_t n_spiked = 0, n_events = 0;
    /* a free unit (its countdown reaching 0) fires if its uniform < phi(u) = sigmoid(u - ln tau_ref) */
    for (int64_t g = 0; g < tot; ++g) {
        int c = cnt[g] > 0 ? cnt[g] - 1 : 0;
        if (c == 0 && uni[g] < 1.0f / (1.0f + expf(p->log_tau - u[g]))) {
            c = (int)p->refractory + 1;
            spiked[n_spiked++] = (int32_t)g;
            fired[g] += 1.0f;
        }
        cnt[g] = (int16_t)c;
        float on = c > p->psp_above ? 1.0f : 0.0f;
        if (on != z[g]) {
            events[2 * n_events] = (int32_t)g;
            events[2 * n_events + 1] = (int32_t)(on > z[g] ? r + 1 : -r - 1);
            ++n_events;
            z[g] = on;
        }
    }
    if (!n_spiked)
        return n_events;
    /* SAL: each spike pairs with the earlier spikes of the layers it joins through a feedback projection */
    float *xs[MAX_LAYERS + 1];
    int any[MAX_LAYERS + 1] = {0};
    for (int64_t l = 0, off = 0; l <= L; off += p->size[l], ++l)
        xs[l] = xbuf + off;
    for (int64_t i = 0; i < n_spiked; ++i) {
        int64_t l = 0;
        while (spiked[i] >= p->start[l + 1])
            ++l;
        any[l] = 1;
    }
    for (int64_t l = 0; l <= L; ++l)
        if ((l > 0 && any[l - 1]) || (l < L && any[l + 1]))
            trace(ages + p->start[l], p->nearest ? 1 : p->m, tot, p->size[l], p->table, xs[l]);
    for (int64_t i = 0; i < n_spiked; ++i) {
        int64_t g = spiked[i], l = 0;
        while (g >= p->start[l + 1])
            ++l;
        int64_t k = g - p->start[l];
        if (l > 0) /* pre of feedback projection l: pairs with layer l-1's earlier spikes (+A) */
            add(p->hebb[l][half] + k * p->size[l - 1], xs[l - 1], p->size[l - 1]);
        if (l < L) /* post of feedback projection l+1: pairs with layer l+1's earlier spikes (-A) */
            add(p->anti[l + 1][half] + k * p->size[l + 1], xs[l + 1], p->size[l + 1]);
    }
    for (int64_t i = 0; i < n_spiked; ++i) { /* the spike enters slot 0, the older ones move down */
        int16_t *a = ages + spiked[i];
        for (int64_t q = p->m - 1; q > 0; --q)
            a[q * tot] = a[(q - 1) * tot];
        a[0] = 0;
    }
    return n_events;
}

/* the potentials of the next step: every PSP that started adds its unit's fan-out rows to its network's potentials,
 * every one that ended takes them away; the events sorted by unit (counting sort), so each row is read once per
 * step for all the networks that need it */
static void apply_events(const phase_t *p, const int32_t *events, int64_t n_events, int32_t *first, int32_t *order)
{
    int64_t tot = p->total, L = p->layers;
    memset(first, 0, (size_t)(tot + 1) * sizeof *first);
    for (int64_t i = 0; i < n_events; ++i)
        ++first[events[2 * i] + 1];
    for (int64_t g = 0; g < tot; ++g)
        first[g + 1] += first[g];
    for (int64_t i = 0; i < n_events; ++i)
        order[first[events[2 * i]]++] = (int32_t)i;
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
    int32_t *spiked, *events, *first, *order;
    float *xbuf;
} slice_t;

typedef struct {
    const phase_t *p;
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
            for (int64_t s = 0; s < p->steps; ++s) {
                int64_t n_events = 0;
                for (int64_t r = r0; r < c->hi && r < r0 + GROUP; ++r)
                    n_events += step_net(p, s, r, c->spiked, c->events + 2 * n_events, c->xbuf);
                apply_events(p, c->events, n_events, c->first, c->order);
            }
    }
}

static PyObject *py_run(PyObject *self, PyObject *args)
{
    (void)self;
    phase_t p;
    int threads;
    unsigned long long sizes, ptrs, table, uniforms, u, fired, count, z, ages;
    if (!PyArg_ParseTuple(args, "LLLLLLLLLfKKKKKKKKKi", &p.steps, &p.nets, &p.layers, &p.split, &p.m, &p.cut,
                          &p.nearest, &p.refractory, &p.psp_above, &p.log_tau, &sizes, &ptrs, &table, &uniforms, &u,
                          &fired, &count, &z, &ages, &threads))
        return NULL;
    if (p.layers < 1 || p.layers > MAX_LAYERS || p.m < 1 || p.cut < 1 || p.cut > 30000 || p.split < 0
        || p.split > p.nets) {
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
    p.uniforms = (const float *)(uintptr_t)uniforms;
    p.u = (float *)(uintptr_t)u;
    p.fired = (float *)(uintptr_t)fired;
    p.count = (int16_t *)(uintptr_t)count;
    p.z = (float *)(uintptr_t)z;
    p.ages = (int16_t *)(uintptr_t)ages;
    size_t tot = (size_t)p.total;
    run_t job = {&p, {{0, p.split, NULL, NULL, NULL, NULL, NULL}, {p.split, p.nets, NULL, NULL, NULL, NULL, NULL}}};
    int ok = 1;
    for (int k = 0; k < 2; ++k) { /* a group's events: at most one per unit and network */
        slice_t *c = &job.slice[k];
        c->spiked = malloc(tot * sizeof *c->spiked);
        c->events = malloc(2 * tot * GROUP * sizeof *c->events);
        c->first = malloc((tot + 1) * sizeof *c->first);
        c->order = malloc(tot * GROUP * sizeof *c->order);
        c->xbuf = malloc(tot * sizeof *c->xbuf);
        ok = ok && c->spiked && c->events && c->first && c->order && c->xbuf;
    }
    if (ok) {
        int nt = threads < 1 ? 1 : threads > 2 ? 2 : threads;
        omp_found();
        Py_BEGIN_ALLOW_THREADS
        team_run(run_task, &job, nt);
        Py_END_ALLOW_THREADS
    }
    for (int k = 0; k < 2; ++k) {
        free(job.slice[k].spiked);
        free(job.slice[k].events);
        free(job.slice[k].first);
        free(job.slice[k].order);
        free(job.slice[k].xbuf);
    }
    if (!ok)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, "Run a chunk of a SAL phase (see neuroplastic.sal.native)."},
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
