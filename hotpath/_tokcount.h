/* Byte-class counts for the token estimate (see _tokens_py.py for the model).
 *
 * count_features() fills out[NFEAT] with how many bytes of d[0..n) have each
 * feature; a feature looks at the byte, the one before and the one after
 * (0 beyond either end). The scalar loop is the reference; on x86-64 the
 * middle of the buffer is done 16 bytes at a time with SSE2, counting into
 * per-lane byte counters that are summed every 255 blocks. Both paths give
 * the same counts.
 */
#ifndef EDGE_TOKCOUNT_H
#define EDGE_TOKCOUNT_H

#include <stddef.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define NFEAT 19

static inline int tc_letter(unsigned x) { return ((x | 32u) - 97u) < 26u; }
static inline int tc_digit(unsigned x) { return (x - 48u) < 10u; }
static inline int tc_space(unsigned x) { return x == 32u || x == 9u; }
static inline int tc_newline(unsigned x) { return x == 10u || x == 13u; }

static inline void tc_scalar(unsigned p, unsigned a, unsigned x, long long *o)
{
    int L = tc_letter(a), Lp = tc_letter(p), Ln = tc_letter(x);
    int D = tc_digit(a), Dp = tc_digit(p), Dn = tc_digit(x);
    int S = tc_space(a), Sp = tc_space(p);
    int N = tc_newline(a), Np = tc_newline(p);
    int P = a < 128u && !(L || D || S || N);
    int fw = a == 0xEFu && (x - 0xBCu) < 4u;
    o[0] += L && !Lp && Sp;
    o[1] += L && !Lp && !Sp;
    o[2] += L;
    o[3] += D;
    o[4] += D && !Dp;
    o[5] += P;
    o[6] += P && Ln;
    o[7] += S;
    o[8] += S && Sp;
    o[9] += S && Dn;
    o[10] += N && !Np;
    o[11] += N;
    o[12] += a == 0xE3u || fw;
    o[13] += (a - 0xE4u) < 6u;
    o[14] += (a - 0xE0u) < 3u || a == 0xEEu || (a == 0xEFu && !fw);
    o[15] += a >= 0xF0u;
    o[16] += (a - 65u) < 26u && (p - 97u) < 26u;
    o[17] += (a - 0xC0u) < 32u;
    o[18] += (a - 0xEAu) < 4u;
}

#if defined(__SSE2__)
/* 0xFF where lo <= x < lo + len (unsigned), else 0 */
static inline __m128i tc_range(__m128i x, unsigned char lo, unsigned char len)
{
    __m128i t = _mm_sub_epi8(x, _mm_set1_epi8((char)lo));
    return _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8((char)(len - 1))), t);
}
static inline __m128i tc_eq(__m128i x, unsigned char v) { return _mm_cmpeq_epi8(x, _mm_set1_epi8((char)v)); }

static inline unsigned long long tc_hsum(__m128i acc)
{
    __m128i s = _mm_sad_epu8(acc, _mm_setzero_si128());
    return (unsigned long long)_mm_cvtsi128_si64(s) + (unsigned long long)_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
}
#endif

static void count_features(const unsigned char *d, ptrdiff_t n, long long *o)
{
    ptrdiff_t i = 0;
    memset(o, 0, NFEAT * sizeof(long long));
    if (n <= 0)
        return;
    tc_scalar(0, d[0], n > 1 ? d[1] : 0, o);
    i = 1;
#if defined(__SSE2__)
    {
        const __m128i case_bit = _mm_set1_epi8(32);
        __m128i acc[NFEAT];
        int k, blocks = 0;
        for (k = 0; k < NFEAT; k++)
            acc[k] = _mm_setzero_si128();
        while (i + 17 <= n) {
            __m128i p = _mm_loadu_si128((const __m128i *)(d + i - 1));
            __m128i a = _mm_loadu_si128((const __m128i *)(d + i));
            __m128i x = _mm_loadu_si128((const __m128i *)(d + i + 1));
            __m128i L = tc_range(_mm_or_si128(a, case_bit), 97, 26);
            __m128i Lp = tc_range(_mm_or_si128(p, case_bit), 97, 26);
            __m128i Ln = tc_range(_mm_or_si128(x, case_bit), 97, 26);
            __m128i D = tc_range(a, 48, 10), Dp = tc_range(p, 48, 10), Dn = tc_range(x, 48, 10);
            __m128i S = _mm_or_si128(tc_eq(a, 32), tc_eq(a, 9));
            __m128i Sp = _mm_or_si128(tc_eq(p, 32), tc_eq(p, 9));
            __m128i N = _mm_or_si128(tc_eq(a, 10), tc_eq(a, 13));
            __m128i Np = _mm_or_si128(tc_eq(p, 10), tc_eq(p, 13));
            __m128i ascii = _mm_cmpgt_epi8(a, _mm_set1_epi8(-1));
            __m128i P = _mm_andnot_si128(_mm_or_si128(_mm_or_si128(L, D), _mm_or_si128(S, N)), ascii);
            __m128i start = _mm_andnot_si128(Lp, L);
            acc[0] = _mm_sub_epi8(acc[0], _mm_and_si128(start, Sp));
            acc[1] = _mm_sub_epi8(acc[1], _mm_andnot_si128(Sp, start));
            acc[2] = _mm_sub_epi8(acc[2], L);
            acc[3] = _mm_sub_epi8(acc[3], D);
            acc[4] = _mm_sub_epi8(acc[4], _mm_andnot_si128(Dp, D));
            acc[5] = _mm_sub_epi8(acc[5], P);
            acc[6] = _mm_sub_epi8(acc[6], _mm_and_si128(P, Ln));
            acc[7] = _mm_sub_epi8(acc[7], S);
            acc[8] = _mm_sub_epi8(acc[8], _mm_and_si128(S, Sp));
            acc[9] = _mm_sub_epi8(acc[9], _mm_and_si128(S, Dn));
            acc[10] = _mm_sub_epi8(acc[10], _mm_andnot_si128(Np, N));
            acc[11] = _mm_sub_epi8(acc[11], N);
            acc[16] = _mm_sub_epi8(acc[16], _mm_and_si128(tc_range(a, 65, 26), tc_range(p, 97, 26)));
            if (_mm_movemask_epi8(a)) { /* only blocks with non-ASCII bytes pay for these */
                __m128i ef = tc_eq(a, 0xEF);
                __m128i fw = _mm_and_si128(ef, tc_range(x, 0xBC, 4));
                acc[12] = _mm_sub_epi8(acc[12], _mm_or_si128(tc_eq(a, 0xE3), fw));
                acc[13] = _mm_sub_epi8(acc[13], tc_range(a, 0xE4, 6));
                acc[14] = _mm_sub_epi8(acc[14], _mm_or_si128(_mm_or_si128(tc_range(a, 0xE0, 3), tc_eq(a, 0xEE)), _mm_andnot_si128(fw, ef)));
                acc[15] = _mm_sub_epi8(acc[15], tc_range(a, 0xF0, 16));
                acc[17] = _mm_sub_epi8(acc[17], tc_range(a, 0xC0, 32));
                acc[18] = _mm_sub_epi8(acc[18], tc_range(a, 0xEA, 4));
            }
            i += 16;
            if (++blocks == 255) {
                for (k = 0; k < NFEAT; k++) {
                    o[k] += (long long)tc_hsum(acc[k]);
                    acc[k] = _mm_setzero_si128();
                }
                blocks = 0;
            }
        }
        for (k = 0; k < NFEAT; k++)
            o[k] += (long long)tc_hsum(acc[k]);
    }
#endif
    for (; i < n; i++)
        tc_scalar(d[i - 1], d[i], i + 1 < n ? d[i + 1] : 0, o);
}

#endif
