/* Native CPU kernels of the Bernoulli RBM's PCD-1 step (neuroplastic.boltzmann.native has the Python side and the
 * equations). Optional: built by setup.py when a C compiler is present; without it the library takes the torch route.
 *
 * All arrays are C-contiguous; pointers arrive as Python ints from tensors the caller owns and keeps alive. Single
 * threaded on purpose: torch's OpenMP workers keep spinning on the other cores after its own products, and a second
 * thread of ours would compete with them.
 *
 * Random numbers: counter-based, u_i = top 24 bits of SplitMix64's finaliser of key + (i + 1) * golden ratio, divided
 * by 2^24 (Steele, Lea & Flood 2014) - the same u_i for the same key on every machine and in any order of work.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CLONES
#endif

typedef float v16 __attribute__((vector_size(64)));

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline float uniform24(uint64_t key, uint64_t i)
{
    return (float)(mix64(key + (i + 1) * 0x9E3779B97F4A7C15ULL) >> 40) * 0x1p-24f;
}

/* exp(x) for x in [-87, 87] (clamped), relative error ~2e-7: x = n ln2 + r, |r| <= ln2/2, exp(r) by its degree-6
 * Taylor polynomial, 2^n through the exponent bits. Written out so that loops over it vectorise. */
static inline float exp_approx(float x)
{
    x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f
              + r * 0.0013888889f)))));
    union { int32_t i; float f; } scale = {((int32_t)n + 127) << 23};
    return p * scale.f;
}

static inline float sigmoid(float a) { return 1.0f / (1.0f + exp_approx(-a)); }

/* s_i = [u_i < p_i] */
CLONES static void bernoulli_kernel(const float *p, int64_t n, uint64_t key, uint8_t *s)
{
    for (int64_t i = 0; i < n; ++i)
        s[i] = uniform24(key, (uint64_t)i) < p[i];
}

/* s_i = [u_i < sigmoid(a_i)], i.e. u_i (1 + e^{-a_i}) < 1 */
CLONES static void bernoulli_logit_kernel(const float *a, int64_t n, uint64_t key, uint8_t *s)
{
    for (int64_t i = 0; i < n; ++i)
        s[i] = uniform24(key, (uint64_t)i) * (1.0f + exp_approx(-a[i])) < 1.0f;
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

/* rows of x [n, d] in {0,1} as CSR: the column indices of row r are cols[off[r] .. off[r+1]) */
CLONES static void csr_rows(const uint8_t *x, int64_t n, int64_t d, int32_t *cols, int64_t *off)
{
    int64_t m = 0;
    off[0] = 0;
    for (int64_t r = 0; r < n; ++r) {
        const uint8_t *xr = x + r * d;
        for (int64_t i = 0; i < d; ++i) {
            cols[m] = (int32_t)i;
            m += xr[i] != 0;
        }
        off[r + 1] = m;
    }
}

/* the same for the rows of x^T (row indices per column, increasing); cur: scratch [d] */
CLONES static void csr_cols(const uint8_t *x, int64_t n, int64_t d, int32_t *rows, int64_t *off, int64_t *cur)
{
    memset(off, 0, (size_t)(d + 1) * sizeof(int64_t));
    for (int64_t r = 0; r < n; ++r) {
        const uint8_t *xr = x + r * d;
        for (int64_t i = 0; i < d; ++i)
            off[i + 1] += xr[i] != 0;
    }
    for (int64_t i = 0; i < d; ++i)
        off[i + 1] += off[i];
    memcpy(cur, off, (size_t)d * sizeof(int64_t));
    for (int64_t r = 0; r < n; ++r) {
        const uint8_t *xr = x + r * d;
        for (int64_t i = 0; i < d; ++i)
            if (xr[i])
                rows[cur[i]++] = (int32_t)r;
    }
}

/* columns [16b, 16b + 16) of src [d, h] copied into a [d, 16] block (zero padded past h) */
static inline void pack_block(const float *src, int64_t d, int64_t h, int64_t b, float *blk)
{
    int64_t c0 = b * 16, cw = h - c0 < 16 ? h - c0 : 16;
    for (int64_t i = 0; i < d; ++i) {
        if (cw < 16)
            memset(blk + i * 16, 0, 64);
        memcpy(blk + i * 16, src + i * h + c0, (size_t)cw * 4);
    }
}

/* sum of the block's rows listed in idx[k0 .. k1) */
static inline v16 gather_sum(const float *blk, const int32_t *idx, int64_t k0, int64_t k1)
{
    v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
        a0 += *(const v16 *)(blk + (int64_t)idx[k] * 16);
        a1 += *(const v16 *)(blk + (int64_t)idx[k + 1] * 16);
        a2 += *(const v16 *)(blk + (int64_t)idx[k + 2] * 16);
        a3 += *(const v16 *)(blk + (int64_t)idx[k + 3] * 16);
    }
    for (; k < k1; ++k)
        a0 += *(const v16 *)(blk + (int64_t)idx[k] * 16);
    return (a0 + a1) + (a2 + a3);
}

/* P [n, h] = sigmoid(ceff + x W) for the CSR rows of x; blk: scratch [d, 16] */
CLONES static void hidden_probs(const int32_t *cols, const int64_t *off, int64_t n, const float *W, int64_t d,
                                int64_t h, const float *ceff, float *P, float *blk)
{
    int64_t nb = (h + 15) / 16;
    for (int64_t b = 0; b < nb; ++b) {
        int64_t c0 = b * 16, cw = h - c0 < 16 ? h - c0 : 16;
        float cb[16] = {0}, t[16];
        memcpy(cb, ceff + c0, (size_t)cw * 4);
        pack_block(W, d, h, b, blk);
        for (int64_t r = 0; r < n; ++r) {
            v16 a = gather_sum(blk, cols, off[r], off[r + 1]);
            memcpy(t, &a, 64);
            for (int q = 0; q < 16; ++q)
                t[q] = 1.0f / (1.0f + exp_approx(-(t[q] + cb[q])));
            memcpy(P + r * h + c0, t, (size_t)cw * 4);
        }
    }
}

/* W [d, h] += lr (x^T Y - mu dy^T) for the CSR rows of x^T (rows: visible units, entries: samples);
 * blk: scratch [n, 16] */
CLONES static void update_weights(const int32_t *rows, const int64_t *off, int64_t d, const float *Y, int64_t n,
                                  int64_t h, float *W, const float *mu, const float *dy, float lr, float *blk)
{
    int64_t nb = (h + 15) / 16;
    for (int64_t b = 0; b < nb; ++b) {
        int64_t c0 = b * 16, cw = h - c0 < 16 ? h - c0 : 16;
        pack_block(Y, n, h, b, blk);
        float dyb[16] = {0}, t[16], w[16] = {0};
        memcpy(dyb, dy + c0, (size_t)cw * 4);
        for (int64_t i = 0; i < d; ++i) {
            v16 a = gather_sum(blk, rows, off[i], off[i + 1]);
            memcpy(t, &a, 64);
            float m = mu[i];
            memcpy(w, W + i * h + c0, (size_t)cw * 4);
            for (int q = 0; q < 16; ++q)
                w[q] += lr * (t[q] - m * dyb[q]);
            memcpy(W + i * h + c0, w, (size_t)cw * 4);
        }
    }
}

/* the step after p(v|h) (pcd_step in native.py): the chains' visible samples into X's last nc rows, P = p(h|X),
 * the centred rule and SGD on W, b, c; returns the batch means vbar of the data and pbar of their p(h|v) for the
 * offsets' move (done by the caller, RBM.set_offsets) */
static void pcd_rest(uint8_t *X, int64_t nd, int64_t nc, int64_t d, int64_t h, const float *av, uint64_t key,
                     float *W, float *b, float *c, const float *ceff, const float *mu, const float *lam, float lr,
                     float *P, float *Y, float *dy, float *pbar, float *vbar, int32_t *cols, int64_t *off,
                     int32_t *rows, int64_t *offT, int64_t *cur, float *blk)
{
    int64_t n = nd + nc;
    bernoulli_logit_kernel(av, nc * d, key, X + nd * d);
    csr_rows(X, n, d, cols, off);
    hidden_probs(cols, off, n, W, d, h, ceff, P, blk);
    /* the centred rule's hidden factors: (P_d - lam)/nd for the data, -(P_m - lam)/nc for the chains */
    float sd = 1.0f / (float)nd, sm = 1.0f / (float)nc;
    for (int64_t q = 0; q < h; ++q)
        dy[q] = 0.0f, pbar[q] = 0.0f;
    for (int64_t r = 0; r < n; ++r) {
        const float *p = P + r * h;
        float *y = Y + r * h;
        if (r < nd)
            for (int64_t q = 0; q < h; ++q) {
                y[q] = (p[q] - lam[q]) * sd;
                dy[q] += p[q] * sd;
                pbar[q] += p[q] * sd;
            }
        else
            for (int64_t q = 0; q < h; ++q) {
                y[q] = (lam[q] - p[q]) * sm;
                dy[q] -= p[q] * sm;
            }
    }
    /* visible statistics: b += lr (mean v_d - mean v_m); vbar = mean v_d */
    for (int64_t i = 0; i < d; ++i)
        vbar[i] = 0.0f;
    for (int64_t r = 0; r < nd; ++r) {
        const uint8_t *xr = X + r * d;
        for (int64_t i = 0; i < d; ++i)
            vbar[i] += (float)xr[i];
    }
    for (int64_t i = 0; i < d; ++i) {
        vbar[i] *= sd;
        b[i] += lr * vbar[i];
    }
    for (int64_t r = nd; r < n; ++r) {
        const uint8_t *xr = X + r * d;
        for (int64_t i = 0; i < d; ++i)
            b[i] -= lr * sm * (float)xr[i];
    }
    for (int64_t q = 0; q < h; ++q)
        c[q] += lr * dy[q];
    csr_cols(X, n, d, rows, offT, cur);
    update_weights(rows, offT, d, Y, n, h, W, mu, dy, lr, blk);
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

static PyObject *py_pcd_rest(PyObject *self, PyObject *args)
{
    unsigned long long X, av, key, W, b, c, ceff, mu, lam, P, Y, dy, pbar, vbar, cols, off, rows, offT, cur, blk;
    long long nd, nc, d, h;
    float lr;
    if (!PyArg_ParseTuple(args, "KLLLLKKKKKKKKfKKKKKKKKKKK", &X, &nd, &nc, &d, &h, &av, &key, &W, &b, &c, &ceff, &mu,
                          &lam, &lr, &P, &Y, &dy, &pbar, &vbar, &cols, &off, &rows, &offT, &cur, &blk))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    pcd_rest(PTR(uint8_t, X), nd, nc, d, h, PTR(const float, av), key, PTR(float, W), PTR(float, b), PTR(float, c),
             PTR(const float, ceff), PTR(const float, mu), PTR(const float, lam), lr, PTR(float, P), PTR(float, Y),
             PTR(float, dy), PTR(float, pbar), PTR(float, vbar), PTR(int32_t, cols), PTR(int64_t, off),
             PTR(int32_t, rows), PTR(int64_t, offT), PTR(int64_t, cur), PTR(float, blk));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
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
    {"binary_u8", py_binary_u8, METH_VARARGS,
     "binary_u8(v, n, s): s_i = [v_i != 0] (float32 -> uint8); whether every v_i is 0 or 1"},
    {"bernoulli", py_bernoulli, METH_VARARGS, "bernoulli(p, n, key, s): s_i = [u_i < p_i] (float32 -> uint8)"},
    {"bernoulli_logit", py_bernoulli_logit, METH_VARARGS,
     "bernoulli_logit(a, n, key, s): s_i = [u_i < sigmoid(a_i)] (float32 -> uint8)"},
    {"pcd_rest", py_pcd_rest, METH_VARARGS, "the Bernoulli RBM's PCD-1 step after p(v|h) (native.py)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", "Native CPU kernels of the RBM step.", -1,
                                    methods};

/* the interface version native.py expects: a stale build left by a failed rebuild (the extension is optional) is
 * then not used */
#define NATIVE_ABI 2

PyMODINIT_FUNC PyInit__native(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "ABI", NATIVE_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
