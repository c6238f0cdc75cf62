/* Feature counts for the token estimate (see _tokens_py.py for the model).
 *
 * count_features() fills out[NFEAT] for d[0..n). Features 0-28 are byte
 * classes: each looks at a byte, the one before and the one after (0 beyond
 * either end). Features 29-43 are per character: tc_char() decodes the two-
 * or three-byte UTF-8 character whose lead byte it is given, and reads the
 * character tables (a byte per BMP code point, two pair bitmaps) that the
 * module copies in at import from the twin. Features 44-50 need to know where
 * the current digit run and non-ASCII run began: a tc_state carries that
 * through the pass; tc_word() looks a finished non-ASCII run up in the two
 * vocabularies' Bloom filters and cuts it greedily into each one's tokens.
 * Features 57-60 look each ASCII letter piece up, whole, in o200k's filter
 * of ASCII words (tc_ascii_word); the state carries where the piece began.
 *
 * The scalar loop is the reference; on x86-64 the middle of the buffer is
 * done 16 bytes at a time with SSE2, counting into per-lane byte counters
 * that are summed every 255 blocks. Blocks with no byte >= 0x80 in them or
 * just before them (most of any ASCII text) skip the non-ASCII features; in
 * the others each lead byte is handed to tc_char(). Both paths give the same
 * counts.
 */
#ifndef EDGE_TOKCOUNT_H
#define EDGE_TOKCOUNT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define NFEAT 61
#define TC_BIGRAM_BITS 15
#define TC_WORD_BITS 21
#define TC_WORD_PROBES 4
#define TC_WORD_MAX 64
#define TC_PIECE_CHARS 8

/* filled once at import (hotpath/_tokens.pyx) */
static unsigned char tc_char_table[0x10000 - 0x80];
static unsigned char tc_bigram_cl[1 << (TC_BIGRAM_BITS - 3)];
static unsigned char tc_bigram_o[1 << (TC_BIGRAM_BITS - 3)];
static unsigned char tc_words_cl[1 << (TC_WORD_BITS - 3)];
static unsigned char tc_words_o[1 << (TC_WORD_BITS - 3)];
static unsigned char tc_ascii_words_o[1 << (TC_WORD_BITS - 3)];

/* where the current digit run, non-ASCII run and ASCII letter piece (their leading
 * space included) begin */
typedef struct {
    ptrdiff_t digits_from, words_from, letters_from;
} tc_state;

static inline int tc_letter(unsigned x) { return ((x | 32u) - 97u) < 26u; }
static inline int tc_digit(unsigned x) { return (x - 48u) < 10u; }
static inline int tc_space(unsigned x) { return x == 32u || x == 9u; }
static inline int tc_newline(unsigned x) { return x == 10u || x == 13u; }
static inline int tc_punct(unsigned x)
{
    return x < 128u && !(tc_letter(x) || tc_digit(x) || tc_space(x) || tc_newline(x));
}
static inline int tc_cont(unsigned x) { return (x & 0xC0u) == 0x80u; }

static inline uint32_t tc_slot(uint32_t first, uint32_t second)
{
    return ((first * 0x9E3779B1u) ^ (second * 0x85EBCA77u)) >> (32 - TC_BIGRAM_BITS);
}

static inline int tc_bit(const unsigned char *bits, uint32_t k) { return (bits[k >> 3] >> (k & 7)) & 1; }

static inline int tc_found(const unsigned char *bits, uint32_t h)
{
    uint32_t step = ((h ^ (h >> 15)) * 0x85EBCA77u) | 1u, k;
    for (k = 0; k < TC_WORD_PROBES; k++)
        if (!tc_bit(bits, (h + k * step) >> (32 - TC_WORD_BITS)))
            return 0;
    return 1;
}

/* pieces of d[start..end) cut greedily, longest vocabulary token (of at most
 * TC_PIECE_CHARS characters) first; a character no token holds is a piece of its own */
static long long tc_pieces(const unsigned char *d, ptrdiff_t start, ptrdiff_t end, const unsigned char *bits)
{
    long long count = 0;
    ptrdiff_t i = start, k, step, best;
    while (i < end) {
        uint32_t h = 0x811C9DC5u;
        int seen = 0;
        step = best = 0;
        for (k = i; k < end; k++) {
            h = (h ^ d[k]) * 0x01000193u;
            if (k + 1 == end || !tc_cont(d[k + 1])) { /* a character ends here */
                if (!step)
                    step = k + 1;
                if (tc_found(bits, h))
                    best = k + 1;
                if (++seen == TC_PIECE_CHARS)
                    break;
            }
        }
        count++;
        i = best ? best : step;
    }
    return count;
}

/* features 45-56 of the non-ASCII run d[start..end) (its leading space included) */
static void tc_word(const unsigned char *d, ptrdiff_t start, ptrdiff_t end, long long *o)
{
    uint32_t h = 0x811C9DC5u;
    long long chars = 0;
    unsigned top = 0;
    int cjk;
    ptrdiff_t k;
    for (k = start; k < end; k++) {
        h = (h ^ d[k]) * 0x01000193u;
        chars += d[k] >= 0xC0u;
        top = d[k] > top ? d[k] : top;
    }
    cjk = top >= 0xE1u; /* a character past U+0FFF: not an alphabet or an Indic script */
    o[cjk ? 55 : 53] += tc_pieces(d, start, end, tc_words_o);
    o[cjk ? 56 : 54] += chars;
    if (end - start > TC_WORD_MAX)
        return;
    if (tc_found(tc_words_cl, h)) {
        o[45]++;
        o[46] += chars;
        o[47] += end - start;
    }
    if (tc_found(tc_words_o, h)) {
        o[48]++;
        o[49] += chars;
        o[50] += end - start;
    }
    if (!cjk) {
        o[51] += tc_pieces(d, start, end, tc_words_cl);
        o[52] += chars;
    }
}

/* 1 << k: a load is cheaper than a shift by a variable count */
static const uint64_t tc_bit64[64] = {
#define TC_B(k) 1ull << (k), 2ull << (k), 4ull << (k), 8ull << (k)
    TC_B(0), TC_B(4), TC_B(8), TC_B(12), TC_B(16), TC_B(20), TC_B(24), TC_B(28),
    TC_B(32), TC_B(36), TC_B(40), TC_B(44), TC_B(48), TC_B(52), TC_B(56), TC_B(60)
#undef TC_B
};

/* eight bytes, little-endian, from anywhere */
static inline uint64_t tc_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* a pending look-up in the ASCII word filter: the piece's filter word and bits */
typedef struct {
    uint64_t mask;
    uint32_t index;
    uint32_t letters; /* bytes, its space included */
} tc_lookup;

/* the filter word and bits of an ASCII letter piece from its length and its first and
 * last eight bytes (zero-padded; last is 0 for eight bytes or fewer) */
static inline void tc_ascii_hash(uint64_t len, uint64_t first, uint64_t last, tc_lookup *q)
{
    uint64_t h = ((first ^ len) * 0xFF51AFD7ED558CCDull) ^ (last * 0xC4CEB9FE1A85EC53ull);
    h ^= h >> 32;
    q->mask = tc_bit64[h & 63] | tc_bit64[(h >> 6) & 63];
    q->index = (uint32_t)(h >> (64 - TC_WORD_BITS + 6));
}

/* the filter slot of the ASCII letter piece d[start..end) (its leading space included);
 * 0 when the piece is too long to be a token. Reads only inside the piece. */
static inline int tc_ascii_slot(const unsigned char *d, ptrdiff_t start, ptrdiff_t end, tc_lookup *q)
{
    ptrdiff_t len = end - start, k;
    uint64_t first = 0;
    q->letters = (uint32_t)len;
    if (len > TC_WORD_MAX)
        return 0;
    if (len >= 8) {
        first = tc_le64(d + start);
    } else {
        for (k = 0; k < len; k++)
            first |= (uint64_t)d[start + k] << (8 * k);
    }
    tc_ascii_hash((uint64_t)len, first, len > 8 ? tc_le64(d + end - 8) : 0, q);
    return 1;
}

/* the same where the eight bytes before end and after start are inside the buffer:
 * loads and selects, no branch on the length */
static inline int tc_ascii_slot_fast(const unsigned char *d, ptrdiff_t start, ptrdiff_t end, tc_lookup *q)
{
    ptrdiff_t len = end - start;
    uint64_t tail = tc_le64(d + end - 8), head = tc_le64(d + start);
    uint64_t first = len >= 8 ? head : tail >> ((64 - 8 * len) & 63);
    q->letters = (uint32_t)len;
    tc_ascii_hash((uint64_t)len, first, len > 8 ? tail : 0, q);
    return len <= TC_WORD_MAX;
}

/* an ASCII letter piece waiting for its look-up */
typedef struct {
    ptrdiff_t from, end;
} tc_span;

/* features 57-60 of pieces whose first and last eight bytes are inside the buffer
 * (found: a whole o200k token); no branch on a piece */
static void tc_ascii_spans(const unsigned char *d, const tc_span *sp, int count, long long *o)
{
    long long found = 0, found_letters = 0, letters = 0;
    int k;
    for (k = 0; k < count; k++) {
        tc_lookup q;
        long long f = tc_ascii_slot_fast(d, sp[k].from, sp[k].end, &q);
        f &= (tc_le64(tc_ascii_words_o + ((size_t)q.index << 3)) & q.mask) == q.mask;
        found += f;
        found_letters += f ? (long long)q.letters : 0;
        letters += q.letters;
    }
    o[57] += found;
    o[58] += found_letters;
    o[59] += count - found;
    o[60] += letters - found_letters;
}

/* features 57-60 of the ASCII letter piece d[start..end), looked up at once */
static void tc_ascii_word(const unsigned char *d, ptrdiff_t start, ptrdiff_t end, long long *o)
{
    tc_lookup q;
    int f = tc_ascii_slot(d, start, end, &q) &&
            (tc_le64(tc_ascii_words_o + ((size_t)q.index << 3)) & q.mask) == q.mask;
    o[57] += f;
    o[58] += f ? q.letters : 0;
    o[59] += !f;
    o[60] += f ? 0 : q.letters;
}

/* features 29-43 of the character whose lead byte (0xC2..0xEF) is d[i] */
static void tc_char(const unsigned char *d, ptrdiff_t n, ptrdiff_t i, long long *o)
{
    unsigned a = d[i], cp, pcp = 0, t;
    if (a < 0xE0u) {
        if (i + 1 >= n || !tc_cont(d[i + 1]))
            return;
        cp = ((a & 0x1Fu) << 6) | (d[i + 1] & 0x3Fu);
    } else {
        if (i + 2 >= n || !tc_cont(d[i + 1]) || !tc_cont(d[i + 2]))
            return;
        cp = ((a & 0x0Fu) << 12) | ((d[i + 1] & 0x3Fu) << 6) | (d[i + 2] & 0x3Fu);
        if (cp < 0x80u)
            return;
    }
    if (cp - 0x3040u <= 0xBFu) {
        o[29]++;
        o[30] += cp <= 0x309Fu;
    } else if (cp - 0x3000u <= 0x3Fu) {
        o[31]++;
    } else if (cp - 0xFF00u <= 0xEFu) {
        o[32]++;
    } else if (cp - 0x900u <= 0x7Fu) {
        o[34]++;
        if (cp - 0x904u <= 0x35u) {
            o[35]++;
        } else if (cp <= 0x903u || cp - 0x93Au <= 0x15u) {
            o[36]++;
            o[37] += cp == 0x94Du;
        }
        o[38] += i > 0 && tc_space(d[i - 1]);
    } else if (cp >= 0x800u && !(cp - 0x3000u <= 0xAFFFu)) {
        o[33]++;
    }
    t = tc_char_table[cp - 0x80u];
    o[39] += (t & 3u) + 1;
    o[40] += (t >> 2) & 3u;
    o[41] += (t >> 4) & 3u;
    if (i >= 2 && tc_cont(d[i - 1])) {
        unsigned b = d[i - 2];
        if (b - 0xC2u <= 0x1Du)
            pcp = ((b & 0x1Fu) << 6) | (d[i - 1] & 0x3Fu);
        else if (i >= 3 && tc_cont(b) && d[i - 3] - 0xE0u <= 0x0Fu)
            pcp = ((d[i - 3] & 0x0Fu) << 12) | ((b & 0x3Fu) << 6) | (d[i - 1] & 0x3Fu);
        if (pcp >= 0x80u) {
            uint32_t h = tc_slot(pcp, cp);
            o[42] += (tc_bigram_cl[h >> 3] >> (h & 7)) & 1u;
            o[43] += (tc_bigram_o[h >> 3] >> (h & 7)) & 1u;
        }
    }
}

/* features 0-28 of byte a (p before it, x after it), and 29-43 when it leads a character */
static inline void tc_scalar(const unsigned char *d, ptrdiff_t n, ptrdiff_t i, long long *o, tc_state *st)
{
    unsigned a = d[i], p = i ? d[i - 1] : 0u, x = i + 1 < n ? d[i + 1] : 0u;
    int Sp = tc_space(p), Pp = i > 0 && tc_punct(p); /* the start of text is no punctuation */
    if (tc_letter(a)) {
        o[2]++;
        if (!tc_letter(p))
            o[Sp ? 0 : 1]++;
        o[16] += (a - 65u) < 26u && (p - 65u) < 26u && (x - 97u) < 26u;
        /* a piece starts after a non-letter or at a lower-to-upper case change */
        if (!tc_letter(p) || ((a - 65u) < 26u && (p - 97u) < 26u))
            st->letters_from = p == 32u ? i - 1 : i;
        if (!tc_letter(x) || ((x - 65u) < 26u && (a - 97u) < 26u))
            tc_ascii_word(d, st->letters_from, i + 1, o);
    } else if (tc_digit(a)) {
        o[3]++;
        if (!tc_digit(p)) {
            o[4]++;
            st->digits_from = i;
        } else {
            o[44] += (i - st->digits_from) % 3 == 0;
        }
    } else if (tc_space(a)) {
        o[7]++;
        if (Sp) {
            o[8]++;
            o[14] += !tc_space(x);
        }
        o[9] += tc_digit(x);
        o[17] += a == 9u;
    } else if (tc_newline(a)) {
        o[11]++;
        o[10] += !tc_newline(p);
        o[15] += Pp;
    } else if (a < 128u) {
        o[5]++;
        o[6] += tc_letter(x);
        o[12] += !Pp;
        o[13] += Sp;
    }
    if (a < 0x80u) {
        o[19] += tc_cont(p);
        return;
    }
    if (p < 0x80u)
        st->words_from = p == 32u ? i - 1 : i;
    if (x < 0x80u)
        tc_word(d, st->words_from, i + 1, o);
    if (a < 0xC0u)
        return;
    o[18] += p < 0x80u && !Sp;
    if (a < 0xE0u) {
        o[20] += !tc_cont(p);
        o[21] += Sp;
        o[22] += a - 0xC2u <= 8u;
        o[23] += a - 0xCDu <= 2u;
        o[24] += a - 0xD0u <= 4u;
        o[25] += a >= 0xD6u;
    } else if (a >= 0xF0u) {
        o[26]++;
    } else {
        o[27] += a - 0xEAu <= 3u;
        o[28] += a - 0xE4u <= 5u;
    }
    if (a - 0xC2u <= 0x2Du)
        tc_char(d, n, i, o);
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
    tc_state st = {0, 0, 0};
    memset(o, 0, NFEAT * sizeof(long long));
    if (n <= 0)
        return;
    tc_scalar(d, n, 0, o, &st);
    i = 1;
#if defined(__SSE2__)
    {
        const __m128i case_bit = _mm_set1_epi8(32);
        __m128i acc[31];
        tc_span span[64];
        int k, blocks = 0, nspan = 0;
        for (k = 0; k < 31; k++)
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
            __m128i Sn = _mm_or_si128(tc_eq(x, 32), tc_eq(x, 9));
            __m128i N = _mm_or_si128(tc_eq(a, 10), tc_eq(a, 13));
            __m128i Np = _mm_or_si128(tc_eq(p, 10), tc_eq(p, 13));
            __m128i ascii = _mm_cmpgt_epi8(a, _mm_set1_epi8(-1));
            __m128i ascii_p = _mm_cmpgt_epi8(p, _mm_set1_epi8(-1));
            __m128i P = _mm_andnot_si128(_mm_or_si128(_mm_or_si128(L, D), _mm_or_si128(S, N)), ascii);
            __m128i Pp = _mm_andnot_si128(_mm_or_si128(_mm_or_si128(Lp, Dp), _mm_or_si128(Sp, Np)), ascii_p);
            __m128i start = _mm_andnot_si128(Lp, L);
            __m128i SS = _mm_and_si128(S, Sp);
            acc[0] = _mm_sub_epi8(acc[0], _mm_and_si128(start, Sp));
            acc[1] = _mm_sub_epi8(acc[1], _mm_andnot_si128(Sp, start));
            acc[2] = _mm_sub_epi8(acc[2], L);
            acc[3] = _mm_sub_epi8(acc[3], D);
            acc[4] = _mm_sub_epi8(acc[4], _mm_andnot_si128(Dp, D));
            acc[5] = _mm_sub_epi8(acc[5], P);
            acc[6] = _mm_sub_epi8(acc[6], _mm_and_si128(P, Ln));
            acc[7] = _mm_sub_epi8(acc[7], S);
            acc[8] = _mm_sub_epi8(acc[8], SS);
            acc[9] = _mm_sub_epi8(acc[9], _mm_and_si128(S, Dn));
            acc[10] = _mm_sub_epi8(acc[10], _mm_andnot_si128(Np, N));
            acc[11] = _mm_sub_epi8(acc[11], N);
            acc[12] = _mm_sub_epi8(acc[12], _mm_andnot_si128(Pp, P));
            acc[13] = _mm_sub_epi8(acc[13], _mm_and_si128(P, Sp));
            acc[14] = _mm_sub_epi8(acc[14], _mm_andnot_si128(Sn, SS));
            acc[15] = _mm_sub_epi8(acc[15], _mm_and_si128(N, Pp));
            acc[16] = _mm_sub_epi8(acc[16], _mm_and_si128(_mm_and_si128(tc_range(a, 65, 26), tc_range(p, 65, 26)), tc_range(x, 97, 26)));
            acc[17] = _mm_sub_epi8(acc[17], tc_eq(a, 9));
            {
                /* ASCII letter pieces: cut where a letter follows a non-letter or
                 * an upper-case letter follows a lower-case one */
                __m128i lower = tc_range(a, 97, 26), upper = tc_range(a, 65, 26);
                __m128i joined_p = _mm_andnot_si128(_mm_and_si128(upper, tc_range(p, 97, 26)), Lp);
                __m128i joined_x = _mm_andnot_si128(_mm_and_si128(tc_range(x, 65, 26), lower), Ln);
                unsigned starts = (unsigned)_mm_movemask_epi8(_mm_andnot_si128(joined_p, L));
                /* every piece ending in this block reads at most d[i - 8 .. i + 24) */
                int fast = i >= 8 && i + 24 <= n;
                __m128i end_v = _mm_andnot_si128(joined_x, L), single = _mm_andnot_si128(joined_p, end_v);
                /* a one-letter piece is always an o200k token, with or without its space:
                 * counted by lane, never looked up */
                unsigned ends = (unsigned)_mm_movemask_epi8(_mm_andnot_si128(single, end_v));
                acc[29] = _mm_sub_epi8(acc[29], single);
                acc[30] = _mm_sub_epi8(acc[30], _mm_and_si128(single, tc_eq(p, 32)));
                /* each piece that ends here began at the last start at or before its end
                 * (or in an earlier block); one branch per piece, none per start */
                while (ends) {
                    int j = __builtin_ctz(ends);
                    unsigned before = starts & (0xFFFFu >> (15 - j));
                    ptrdiff_t s = i + 31 - __builtin_clz(before | 1u), from = s - (d[s - 1] == 32u);
                    st.letters_from = before ? from : st.letters_from;
                    if (fast) { /* looked up in batches, in a tight loop of its own */
                        span[nspan].from = st.letters_from;
                        span[nspan].end = i + j + 1;
                        nspan++;
                    } else {
                        tc_ascii_word(d, st.letters_from, i + j + 1, o);
                    }
                    ends &= ends - 1;
                }
                if (starts) { /* a piece may go on into the next block */
                    ptrdiff_t s = i + 31 - __builtin_clz(starts);
                    st.letters_from = s - (d[s - 1] == 32u);
                }
            }
            {
                unsigned digits = (unsigned)_mm_movemask_epi8(D);
                if (_mm_movemask_epi8(_mm_and_si128(D, Dp))) { /* a run goes on here: walk it */
                    unsigned after = (unsigned)_mm_movemask_epi8(Dp);
                    while (digits) {
                        int j = __builtin_ctz(digits);
                        if (after >> j & 1u)
                            o[44] += (i + j - st.digits_from) % 3 == 0;
                        else
                            st.digits_from = i + j;
                        digits &= digits - 1;
                    }
                } else if (digits & 0x8000u) { /* a run may start in the last lane */
                    st.digits_from = i + 15;
                }
            }
            if (_mm_movemask_epi8(_mm_or_si128(a, p))) { /* only blocks near non-ASCII bytes pay for these */
                __m128i cont_p = tc_range(p, 0x80, 0x40);
                __m128i lead = tc_range(a, 0xC0, 0x40);
                __m128i lead2 = tc_range(a, 0xC0, 0x20);
                unsigned chars;
                acc[18] = _mm_sub_epi8(acc[18], _mm_andnot_si128(Sp, _mm_and_si128(lead, ascii_p)));
                acc[19] = _mm_sub_epi8(acc[19], _mm_and_si128(ascii, cont_p));
                acc[20] = _mm_sub_epi8(acc[20], _mm_andnot_si128(cont_p, lead2));
                acc[21] = _mm_sub_epi8(acc[21], _mm_and_si128(lead2, Sp));
                acc[22] = _mm_sub_epi8(acc[22], tc_range(a, 0xC2, 9));
                acc[23] = _mm_sub_epi8(acc[23], tc_range(a, 0xCD, 3));
                acc[24] = _mm_sub_epi8(acc[24], tc_range(a, 0xD0, 5));
                acc[25] = _mm_sub_epi8(acc[25], tc_range(a, 0xD6, 10));
                acc[26] = _mm_sub_epi8(acc[26], tc_range(a, 0xF0, 16));
                acc[27] = _mm_sub_epi8(acc[27], tc_range(a, 0xEA, 4));
                acc[28] = _mm_sub_epi8(acc[28], tc_range(a, 0xE4, 6));
                chars = (unsigned)_mm_movemask_epi8(tc_range(a, 0xC2, 0x2E));
                while (chars) {
                    int j = __builtin_ctz(chars);
                    tc_char(d, n, i + j, o);
                    chars &= chars - 1;
                }
                {
                    __m128i high = _mm_xor_si128(ascii, _mm_set1_epi8(-1));
                    __m128i ascii_x = _mm_cmpgt_epi8(x, _mm_set1_epi8(-1));
                    unsigned starts = (unsigned)_mm_movemask_epi8(_mm_and_si128(high, ascii_p));
                    unsigned ends = (unsigned)_mm_movemask_epi8(_mm_and_si128(high, ascii_x));
                    unsigned both = starts | ends;
                    while (both) {
                        int j = __builtin_ctz(both);
                        if (starts >> j & 1u)
                            st.words_from = d[i + j - 1] == 32u ? i + j - 1 : i + j;
                        if (ends >> j & 1u)
                            tc_word(d, st.words_from, i + j + 1, o);
                        both &= both - 1;
                    }
                }
            }
            if (nspan > 64 - 16) {
                tc_ascii_spans(d, span, nspan, o);
                nspan = 0;
            }
            i += 16;
            if (++blocks == 255) {
                for (k = 0; k < 29; k++) {
                    o[k] += (long long)tc_hsum(acc[k]);
                    acc[k] = _mm_setzero_si128();
                }
                o[57] += (long long)tc_hsum(acc[29]);
                o[58] += (long long)tc_hsum(acc[29]) + (long long)tc_hsum(acc[30]);
                acc[29] = acc[30] = _mm_setzero_si128();
                blocks = 0;
            }
        }
        for (k = 0; k < 29; k++)
            o[k] += (long long)tc_hsum(acc[k]);
        o[57] += (long long)tc_hsum(acc[29]);
        o[58] += (long long)tc_hsum(acc[29]) + (long long)tc_hsum(acc[30]);
        tc_ascii_spans(d, span, nspan, o);
    }
#endif
    for (; i < n; i++)
        tc_scalar(d, n, i, o, &st);
}

#endif
