/* Shared by the native kernels (boltzmann/_native.c, sal/_native.c; each includes it once): their random numbers
 * (a counter-based stream, and xoshiro lanes for a kernel that draws in a fixed order, below) and the exponential
 * their Bernoulli draws use.
 *
 * u_i = top 24 bits of SplitMix64's finaliser of key + (i + 1) * golden ratio, divided by 2^24 (Steele, Lea & Flood
 * 2014): the same u_i for the same key on every machine and in any order of work, so a kernel may draw only the
 * numbers it needs, on any thread. A draw with probability sigmoid(a) is written u_i (1 + e^{-a}) < 1. */
#ifndef NEUROPLASTIC_STREAM_H
#define NEUROPLASTIC_STREAM_H

#include <stdint.h>
#include <string.h>

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

/* the samples of the stream: [u_i < p], and [u_i < sigmoid(a)] written as u_i (1 + e^{-a}) < 1 */
static inline uint8_t draw(uint64_t key, uint64_t i, float p) { return uniform24(key, i) < p; }

static inline uint8_t draw_logit(uint64_t key, uint64_t i, float a)
{
    return uniform24(key, i) * (1.0f + exp_approx(-a)) < 1.0f;
}

/* ---- lanes: eight xoshiro128++ generators side by side (Blackman & Vigna 2021), for a kernel that draws in a fixed
 * order (SAL's phase: a network's units step by step). Only 32-bit adds, shifts and xors, so eight lanes cost about a
 * dozen vector operations per eight numbers - a fraction of the counter stream's 64-bit products. Lane q of a
 * seeded state draws the numbers of units q, q + 8, q + 16, ... in turn; u = top 24 bits / 2^24. */
typedef uint32_t lanes_t __attribute__((vector_size(32)));

typedef struct {
    lanes_t s[4];
} xoshiro8_t;

/* the four words of every lane from SplitMix64 of seed + (j + 1) * golden ratio (j = lane word), never all zero */
static inline void xoshiro8_seed(xoshiro8_t *x, uint64_t seed)
{
    for (int w = 0; w < 4; ++w)
        for (int q = 0; q < 8; ++q)
            x->s[w][q] = (uint32_t)(mix64(seed + (uint64_t)(w * 8 + q + 1) * 0x9E3779B97F4A7C15ULL) >> 32);
    for (int q = 0; q < 8; ++q)
        if (!(x->s[0][q] | x->s[1][q] | x->s[2][q] | x->s[3][q]))
            x->s[0][q] = 1;
}

static inline lanes_t rotl8(lanes_t v, int k) { return (v << k) | (v >> (32 - k)); }

/* the next eight numbers, lane q's in element q */
static inline lanes_t xoshiro8_next(xoshiro8_t *x)
{
    lanes_t *s = x->s;
    lanes_t out = rotl8(s[0] + s[3], 7) + s[0], t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl8(s[3], 11);
    return out;
}

/* t[g] = u_g for g < n rounded up to 8: the next numbers of the lanes, unit g from lane g mod 8, top 24 bits / 2^24 */
static inline __attribute__((always_inline)) void xoshiro8_uniforms(xoshiro8_t *x, float *t, int64_t n)
{
    typedef int32_t i32x8 __attribute__((vector_size(32)));
    typedef float f32x8 __attribute__((vector_size(32)));
    for (int64_t g = 0; g < n; g += 8) {
        f32x8 v = __builtin_convertvector((i32x8)(xoshiro8_next(x) >> 8), f32x8) * 0x1p-24f;
        memcpy(t + g, &v, sizeof v);
    }
}

#endif
