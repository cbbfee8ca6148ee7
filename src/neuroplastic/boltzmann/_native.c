/* Native CPU kernels of the Bernoulli RBM's PCD-1 step (neuroplastic.boltzmann.native has the Python side and the
 * equations). Optional: built by setup.py when a C compiler is present; without it the library takes the torch route.
 *
 * All arrays are C-contiguous; pointers arrive as Python ints from tensors the caller owns and keeps alive. The step
 * runs on torch's OpenMP team (as many threads as torch uses) and does all of its work itself. Every thread's share
 * is fixed by the shapes alone and each value is summed in one order, so the result does not depend on the number
 * of threads.
 *
 * Random numbers: the counter-based stream of _stream.h - the same u_i for the same key on every machine and in any
 * order of work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "../_stream.h"
#include "../_team.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CLONES
#endif

typedef float v16 __attribute__((vector_size(64)));

/* s_i = draw(key, i, p_i) */
CLONES static void bernoulli_kernel(const float *p, int64_t n, uint64_t key, uint8_t *s)
{
    for (int64_t i = 0; i < n; ++i)
        s[i] = draw(key, (uint64_t)i, p[i]);
}

/* s_i = draw_logit(key, i, a_i) */
CLONES static void bernoulli_logit_kernel(const float *a, int64_t n, uint64_t key, uint8_t *s)
{
    for (int64_t i = 0; i < n; ++i)
        s[i] = draw_logit(key, (uint64_t)i, a[i]);
}

/* s_i = [v_i != 0]; returns 1 when every v_i is 0 or 1, else 0 (s then unusable) */
CLONES static int binary_u8(const float *v, int64_t n, uint8_t *s)
{
    int ok = 1;
    for (int64_t i = 0; i < n; ++i) {
        ok &= (v[i] == 0.0f) | (v[i] == 1.0f);
        s[i] = v[i] != 0.0f;
    }
    return ok;
}

/* ---- the PCD-1 step ---- */

/* sum of the 16-float rows of blk listed in idx[0 .. k) */
static inline __attribute__((always_inline)) v16 gather_sum(const float *blk, const int32_t *idx, int64_t k)
{
    v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t j = 0;
    for (; j + 4 <= k; j += 4) {
        a0 += *(const v16 *)(blk + (int64_t)idx[j] * 16);
        a1 += *(const v16 *)(blk + (int64_t)idx[j + 1] * 16);
        a2 += *(const v16 *)(blk + (int64_t)idx[j + 2] * 16);
        a3 += *(const v16 *)(blk + (int64_t)idx[j + 3] * 16);
    }
    for (; j < k; ++j)
        a0 += *(const v16 *)(blk + (int64_t)idx[j] * 16);
    return (a0 + a1) + (a2 + a3);
}

static inline __attribute__((always_inline)) v16 sigmoid16(v16 a)
{
    float t[16];
    memcpy(t, &a, 64);
    for (int q = 0; q < 16; ++q)
        t[q] = sigmoid(t[q]);
    memcpy(&a, t, 64);
    return a;
}

static inline __attribute__((always_inline)) v16 load16(const float *x, int64_t w) /* x[0 .. w), zero padded */
{
    v16 a = {0};
    if (w == 16)
        memcpy(&a, x, 64);
    else
        for (int64_t q = 0; q < w; ++q)
            a[q] = x[q];
    return a;
}

static inline __attribute__((always_inline)) void store16(float *x, v16 a, int64_t w) /* x[0 .. w) = a[0 .. w) */
{
    if (w == 16)
        memcpy(x, &a, 64);
    else
        for (int64_t q = 0; q < w; ++q)
            x[q] = a[q];
}

typedef struct {
    /* data X[:nd] (0/1, set by the caller), chains' p(h|v) in ph [nc, h] and visible states in vc [nc, d] (both
     * replaced), parameters W [d, h], b, c, offsets mu, lam, the learning rate, the offsets' rate, the two keys */
    uint8_t *X;
    int64_t nd, nc, d, h;
    float *ph, *vc, *W, *b, *c, *mu, *lam;
    float lr, nu;
    uint64_t key_h, key_v;
    /* the data's visible means, and the offsets' moves */
    float *vbar, *dmu, *dlam;
    /* scratch: the chains' hidden samples as codes [nc, ceil(h / 4)]; X's rows as index lists [n, d]; X's columns as
     * index lists [d, n]; per thread: a packed block of max(d, 4 ceil(h / 4)) x 16, a block of n x 16 and a table
     * of ceil(h / 4) x 16 x 16 */
    uint8_t *hcode;
    int32_t *ridx, *rcnt, *cidx, *ccnt;
    float *blk, *tile, *tab;
    barrier_t bar;
} step_t;

static inline void part(int64_t n, int tid, int nt, int64_t *lo, int64_t *hi)
{
    *lo = n * tid / nt;
    *hi = n * (tid + 1) / nt;
}

/* the PCD-1 step (native.py's docstring has the equations), thread tid of nt: phases split by barriers */
CLONES static void step_task(void *arg, int tid, int nt)
{
    step_t *s = arg;
    const int64_t nd = s->nd, nc = s->nc, d = s->d, h = s->h, n = nd + nc;
    const float lr = s->lr, sd = 1.0f / (float)nd, sm = 1.0f / (float)nc;
    const int64_t ng = (h + 3) / 4, rows = d > 4 * ng ? d : 4 * ng; /* groups of 4 hidden units; packed rows */
    float *blk = s->blk + (int64_t)tid * rows * 16, *tile = s->tile + (int64_t)tid * n * 16;
    v16 *tab = (v16 *)s->tab + (int64_t)tid * ng * 16;
    int sense = 0;
    int64_t lo, hi;

    /* 1. the chains' hidden samples h_c ~ p(h|v_c), as 4-bit codes of groups of 4 units (unit 4g + k is bit k) */
    part(nc, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; ++r) {
        const float *p = s->ph + r * h;
        uint8_t *code = s->hcode + r * ng;
        memset(code, 0, (size_t)ng);
        for (int64_t j = 0; j < h; ++j)
            code[j >> 2] |= (uint8_t)(draw(s->key_h, (uint64_t)(r * h + j), p[j]) << (j & 3));
    }
    barrier_wait(&s->bar, &sense, nt);

    /* 2. per block of 16 visible units: W^T packed, the effective bias b - W lam, and v_m ~ sigmoid(b - W lam +
     * W h_c) into X[nd:]. W h_c by the method of four Russians (Arlazarov et al. 1970): the sums of all 16 subsets of
     * each group of 4 rows of W^T are tabulated once per block, then each chain adds one entry per group */
    int64_t nbv = (d + 15) / 16;
    part(nbv, tid, nt, &lo, &hi);
    for (int64_t vb = lo; vb < hi; ++vb) {
        int64_t i0 = vb * 16, w = d - i0 < 16 ? d - i0 : 16;
        if (w < 16)
            memset(blk, 0, (size_t)h * 64);
        memset(blk + h * 16, 0, (size_t)(4 * ng - h) * 64); /* rows of the last group past h */
        for (int64_t q = 0; q < w; ++q) {
            const float *row = s->W + (i0 + q) * h;
            for (int64_t j = 0; j < h; ++j)
                blk[j * 16 + q] = row[j];
        }
        v16 l0 = {0}, l1 = {0}; /* W lam for the block */
        int64_t j = 0;
        for (; j + 2 <= h; j += 2) {
            l0 += s->lam[j] * *(const v16 *)(blk + j * 16);
            l1 += s->lam[j + 1] * *(const v16 *)(blk + (j + 1) * 16);
        }
        if (j < h)
            l0 += s->lam[j] * *(const v16 *)(blk + j * 16);
        v16 bv = load16(s->b + i0, w) - (l0 + l1);
        for (int64_t g = 0; g < ng; ++g) {
            const v16 *x = (const v16 *)(blk + g * 64);
            v16 *t = tab + g * 16;
            t[0] = (v16){0}, t[1] = x[0], t[2] = x[1], t[3] = x[0] + x[1];
            t[4] = x[2], t[5] = x[2] + x[0], t[6] = x[2] + x[1], t[7] = x[2] + t[3];
            for (int k = 0; k < 8; ++k)
                t[8 + k] = x[3] + t[k];
        }
        for (int64_t r = 0; r < nc; ++r) {
            float a[16];
            const uint8_t *code = s->hcode + r * ng;
            v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            int64_t g = 0;
            for (; g + 4 <= ng; g += 4) {
                a0 += tab[g * 16 + code[g]];
                a1 += tab[(g + 1) * 16 + code[g + 1]];
                a2 += tab[(g + 2) * 16 + code[g + 2]];
                a3 += tab[(g + 3) * 16 + code[g + 3]];
            }
            for (; g < ng; ++g)
                a0 += tab[g * 16 + code[g]];
            v16 t = (a0 + a1) + (a2 + a3) + bv;
            memcpy(a, &t, 64);
            uint8_t *x = s->X + (nd + r) * d + i0;
            for (int64_t q = 0; q < w; ++q)
                x[q] = draw_logit(s->key_v, (uint64_t)(r * d + i0 + q), a[q]);
        }
    }
    barrier_wait(&s->bar, &sense, nt);

    /* 3. X's rows and columns as index lists; the chains' visible states; b and the data's visible means */
    part(n, tid, nt, &lo, &hi);
    for (int64_t r = lo; r < hi; ++r) {
        const uint8_t *x = s->X + r * d;
        int32_t *idx = s->ridx + r * d, m = 0;
        for (int64_t i = 0; i < d; ++i) {
            idx[m] = (int32_t)i;
            m += x[i];
        }
        s->rcnt[r] = m;
        if (r >= nd)
            for (int64_t i = 0; i < d; ++i)
                s->vc[(r - nd) * d + i] = (float)x[i];
    }
    barrier_wait(&s->bar, &sense, nt);
    /* the column lists from the (increasing) row lists: this thread's columns [lo, hi) */
    part(d, tid, nt, &lo, &hi);
    for (int64_t i = lo; i < hi; ++i)
        s->ccnt[i] = 0;
    for (int64_t r = 0; r < n; ++r) {
        const int32_t *idx = s->ridx + r * d;
        int32_t k = 0, m = s->rcnt[r];
        if (r == nd) /* the data's counts, kept in vbar for now */
            for (int64_t i = lo; i < hi; ++i)
                s->vbar[i] = (float)s->ccnt[i];
        while (k < m && idx[k] < lo)
            ++k;
        for (; k < m && idx[k] < hi; ++k)
            s->cidx[(int64_t)idx[k] * n + s->ccnt[idx[k]]++] = (int32_t)r;
    }
    for (int64_t i = lo; i < hi; ++i) {
        float cd = s->vbar[i], cm = (float)s->ccnt[i] - cd;
        s->vbar[i] = cd * sd;
        s->b[i] += lr * (cd * sd - cm * sm);
        s->dmu[i] = s->nu * (s->vbar[i] - s->mu[i]);
    }
    barrier_wait(&s->bar, &sense, nt);

    /* 4. per block of 16 hidden units: W packed, the effective bias c - W^T mu, P = p(h|X), the centred rule's
     * factors, c, and the block's weights */
    int64_t nbh = (h + 15) / 16;
    part(nbh, tid, nt, &lo, &hi);
    for (int64_t hb = lo; hb < hi; ++hb) {
        int64_t c0 = hb * 16, w = h - c0 < 16 ? h - c0 : 16;
        v16 ceff = load16(s->c + c0, w), lam = load16(s->lam + c0, w), pd = {0}, pm = {0};
        for (int64_t i = 0; i < d; ++i) {
            v16 row = load16(s->W + i * h + c0, w);
            *(v16 *)(blk + i * 16) = row;
            ceff -= s->mu[i] * row;
        }
        for (int64_t r = 0; r < n; ++r) {
            v16 p = sigmoid16(gather_sum(blk, s->ridx + r * d, s->rcnt[r]) + ceff);
            if (r < nd) {
                *(v16 *)(tile + r * 16) = (p - lam) * sd;
                pd += p;
            } else {
                *(v16 *)(tile + r * 16) = (lam - p) * sm;
                pm += p;
                store16(s->ph + (r - nd) * h + c0, p, w);
            }
        }
        pd *= sd;
        v16 dy = pd - pm * sm, dc = {0};
        store16(s->dlam + c0, s->nu * (pd - lam), w);
        for (int64_t i = 0; i < d; ++i) {
            v16 row = *(v16 *)(blk + i * 16) + lr * (gather_sum(tile, s->cidx + i * n, s->ccnt[i]) - s->mu[i] * dy);
            store16(s->W + i * h + c0, row, w);
            dc += s->dmu[i] * row;
        }
        /* SGD, then the offsets' move with the new weights: c += W^T (mu' - mu) */
        store16(s->c + c0, load16(s->c + c0, w) + lr * dy + dc, w);
    }
    if (s->nu == 0.0f)
        return;
    barrier_wait(&s->bar, &sense, nt);

    /* 5. the rest of the offsets' move: b += W (lam' - lam), then the offsets themselves */
    part(d, tid, nt, &lo, &hi);
    for (int64_t i = lo; i < hi; ++i) {
        v16 acc = {0};
        for (int64_t j = 0; j < h; j += 16) {
            int64_t w = h - j < 16 ? h - j : 16;
            acc += load16(s->W + i * h + j, w) * load16(s->dlam + j, w);
        }
        float t[16], sum = 0.0f;
        memcpy(t, &acc, 64);
        for (int q = 0; q < 16; ++q)
            sum += t[q];
        s->b[i] += sum;
        s->mu[i] += s->dmu[i];
    }
    part(h, tid, nt, &lo, &hi);
    for (int64_t j = lo; j < hi; ++j)
        s->lam[j] += s->dlam[j];
}

#define PTR(T, v) ((T *)(uintptr_t)(v))

/* (p or a, n, key, s) -> kernel(p or a, n, key, s), without the GIL */
static PyObject *call_sampler(PyObject *args, void (*kernel)(const float *, int64_t, uint64_t, uint8_t *))
{
    unsigned long long x, s, key;
    long long n;
    if (!PyArg_ParseTuple(args, "KLKK", &x, &n, &key, &s))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    kernel(PTR(const float, x), n, key, PTR(uint8_t, s));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_bernoulli(PyObject *self, PyObject *args) { return call_sampler(args, bernoulli_kernel); }

static PyObject *py_bernoulli_logit(PyObject *self, PyObject *args)
{
    return call_sampler(args, bernoulli_logit_kernel);
}

static PyObject *py_pcd_step(PyObject *self, PyObject *args)
{
    unsigned long long X, ph, vc, W, b, c, mu, lam, key_h, key_v, vbar, dmu, dlam, hcode, ridx, rcnt, cidx, ccnt,
        blk, tile, tab;
    long long nd, nc, d, h;
    float lr, nu;
    int nt;
    if (!PyArg_ParseTuple(args, "KLLLLKKKKKKKffKKKKKKKKKKKKKi", &X, &nd, &nc, &d, &h, &ph, &vc, &W, &b, &c, &mu,
                          &lam, &lr, &nu, &key_h, &key_v, &vbar, &dmu, &dlam, &hcode, &ridx, &rcnt, &cidx,
                          &ccnt, &blk, &tile, &tab, &nt))
        return NULL;
    if (nd < 1 || nc < 1 || d < 1 || h < 1 || nd + nc > INT32_MAX || d > INT32_MAX || h > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "pcd_step: shapes out of range");
        return NULL;
    }
    step_t s = {PTR(uint8_t, X), nd, nc, d, h, PTR(float, ph), PTR(float, vc), PTR(float, W), PTR(float, b),
                PTR(float, c), PTR(float, mu), PTR(float, lam), lr, nu, key_h, key_v, PTR(float, vbar),
                PTR(float, dmu), PTR(float, dlam), PTR(uint8_t, hcode), PTR(int32_t, ridx),
                PTR(int32_t, rcnt), PTR(int32_t, cidx), PTR(int32_t, ccnt), PTR(float, blk), PTR(float, tile),
                PTR(float, tab)};
    atomic_init(&s.bar.count, 0);
    atomic_init(&s.bar.sense, 0);
    omp_found();
    Py_BEGIN_ALLOW_THREADS
    team_run(step_task, &s, nt);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *py_openmp(PyObject *self, PyObject *args)
{
    (void)self, (void)args;
    if (!omp_found())
        Py_RETURN_NONE;
    return PyUnicode_DecodeFSDefault(omp_path);
}

static PyObject *py_binary_u8(PyObject *self, PyObject *args)
{
    unsigned long long v, s;
    long long n;
    int ok;
    if (!PyArg_ParseTuple(args, "KLK", &v, &n, &s))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    ok = binary_u8(PTR(const float, v), n, PTR(uint8_t, s));
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"openmp", py_openmp, METH_NOARGS, "openmp(): the path of the OpenMP runtime whose threads run the step, or None"},
    {"binary_u8", py_binary_u8, METH_VARARGS,
     "binary_u8(v, n, s): s_i = [v_i != 0] (float32 -> uint8); whether every v_i is 0 or 1"},
    {"bernoulli", py_bernoulli, METH_VARARGS, "bernoulli(p, n, key, s): s_i = [u_i < p_i] (float32 -> uint8)"},
    {"bernoulli_logit", py_bernoulli_logit, METH_VARARGS,
     "bernoulli_logit(a, n, key, s): s_i = [u_i < sigmoid(a_i)] (float32 -> uint8)"},
    {"pcd_step", py_pcd_step, METH_VARARGS, "the Bernoulli RBM's PCD-1 step on nt threads (native.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernels of the RBM step.", -1,
                                    methods};

/* the interface version native.py expects: a stale build left by a failed rebuild (the extension is optional) is
 * then not used */
#define NATIVE_ABI 5

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", NATIVE_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
