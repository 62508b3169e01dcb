/*
 * The engine's three hot loops in C: a run of complete short FASTA records inside one chunk
 * (``whole_records``), a run of plain four-line FASTQ records (``fastq_records``), and cleaning a
 * large piece of sequence text of any format (``clean``, ``clean_into``).
 *
 * shared/parsing/fasta.py and fastq.py do the same in Python (and are used where this module is
 * not built); both must give identical events. A record is handled here only in the plain case -- an ASCII
 * header without CR, sequence text of the alphabet's letters and newlines only, under the record
 * limit. Anything else stops the run at that record, and Python handles it (cleaning CR, gaps and
 * other whitespace, or raising the error with its line and column).
 *
 * For each record it strips newlines, upper-cases the checksum input, computes MD5 and the GA4GH
 * refget identifier (SHA-512, first 24 bytes, base64url, "SQ." prefix) with libcrypto, splits the
 * header like str.split(None, 1), and appends a WholeRecord to the caller's event list.
 */
#define PY_SSIZE_T_CLEAN
/* OpenSSL 3 deprecates the low-level digest calls, but through EVP every record would pay for a
   provider context; for ~200-byte inputs that doubles the cost. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <pthread.h>
#include <sched.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <signal.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <openssl/md5.h>
#include <openssl/sha.h>

static const char HEX[] = "0123456789abcdef";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* What str.isspace() says of an ASCII byte (str.split and str.strip use it). */
static inline int is_space(unsigned char c)
{
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
}

static PyObject *ascii_str(const unsigned char *s, Py_ssize_t n)
{
    PyObject *out = PyUnicode_New(n, 127);
    if (out != NULL && n > 0)
        memcpy(PyUnicode_1BYTE_DATA(out), s, (size_t)n);
    return out;
}

static int digests(const unsigned char *data, size_t n, unsigned char *md5, unsigned char *sha)
{
    MD5_CTX m;
    SHA512_CTX s;
    return MD5_Init(&m) && MD5_Update(&m, data, n) && MD5_Final(md5, &m) && SHA512_Init(&s) &&
           SHA512_Update(&s, data, n) && SHA512_Final(sha, &s);
}

/* Check and upper-case one line (no newline inside) the plain way; returns non-zero if bad. */
static unsigned scalar_line(const unsigned char *p, Py_ssize_t run, const unsigned char *table, unsigned char *uu)
{
    unsigned bad = 0;
    for (Py_ssize_t i = 0; i < run; i++) {
        unsigned char c = p[i];
        bad |= !table[c];
        uu[i] = (unsigned char)(c - (((unsigned char)(c - 'a') < 26u) << 5));
    }
    return bad;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The alphabet's letters as two 16-entry nibble tables (byte c is a letter iff
   lo[c & 15] & hi[c >> 4] != 0), so that sixteen bytes are checked with two shuffles. */
typedef struct {
    unsigned char lo[16], hi[16];
    int usable;
} NibbleSet;

static void nibble_set(const unsigned char *table, NibbleSet *ns)
{
    unsigned short seen[8];
    int classes = 0;
    memset(ns, 0, sizeof(*ns));
    for (int h = 0; h < 16; h++) {
        unsigned short pattern = 0;
        for (int l = 0; l < 16; l++)
            if (table[h * 16 + l])
                pattern |= (unsigned short)(1u << l);
        if (pattern == 0)
            continue;
        int k = 0;
        while (k < classes && seen[k] != pattern)
            k++;
        if (k == classes) {
            if (classes == 8)
                return; /* not expressible: the scalar loop is used */
            seen[classes++] = pattern;
        }
        ns->hi[h] |= (unsigned char)(1u << k);
        for (int l = 0; l < 16; l++)
            if (pattern & (1u << l))
                ns->lo[l] |= (unsigned char)(1u << k);
    }
    ns->usable = 1;
}

__attribute__((target("ssse3"))) static unsigned simd_line(const unsigned char *p, Py_ssize_t run,
                                                             const NibbleSet *ns, const unsigned char *table,
                                                             unsigned char *uu)
{
    const __m128i lo_t = _mm_loadu_si128((const __m128i *)ns->lo);
    const __m128i hi_t = _mm_loadu_si128((const __m128i *)ns->hi);
    const __m128i low4 = _mm_set1_epi8(0x0f);
    const __m128i shift = _mm_set1_epi8((char)(0x80 - 'a')); /* 'a'..'z' -> -128..-103 */
    const __m128i limit = _mm_set1_epi8((char)(-128 + 26));
    const __m128i case_bit = _mm_set1_epi8(0x20);
    __m128i bad = _mm_setzero_si128();
    Py_ssize_t i = 0;
    for (; i + 16 <= run; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i lo = _mm_and_si128(v, low4);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
        __m128i hit = _mm_and_si128(_mm_shuffle_epi8(lo_t, lo), _mm_shuffle_epi8(hi_t, hi));
        bad = _mm_or_si128(bad, _mm_cmpeq_epi8(hit, _mm_setzero_si128()));
        __m128i lower = _mm_cmplt_epi8(_mm_add_epi8(v, shift), limit);
        _mm_storeu_si128((__m128i *)(uu + i), _mm_sub_epi8(v, _mm_and_si128(lower, case_bit)));
    }
    return (unsigned)_mm_movemask_epi8(bad) | scalar_line(p + i, run - i, table, uu + i);
}
#endif

/* How text is checked: the letter table, and its nibble form where the CPU can use it. */
typedef struct {
    const unsigned char *table;
#if defined(__x86_64__) && defined(__GNUC__)
    NibbleSet ns;
    int simd;
#endif
} Cleaner;

static void cleaner_init(Cleaner *c, const unsigned char *table)
{
    c->table = table;
#if defined(__x86_64__) && defined(__GNUC__)
    nibble_set(table, &c->ns);
    c->simd = c->ns.usable && __builtin_cpu_supports("ssse3");
#endif
}

/* Newlines out, letters checked, upper-cased copy into ``u``; n = bytes kept. 0 if not plain. */
static int clean_text(const unsigned char *in, Py_ssize_t len, const Cleaner *cleaner, unsigned char *d,
                      unsigned char *u, Py_ssize_t *kept, Py_ssize_t *newlines)
{
    const unsigned char *table = cleaner->table;
    /* Line by line: memchr finds the newlines, each line is copied, then checked and upper-cased
       sixteen bytes at a time where the CPU can, one at a time (without branches) elsewhere. */
    const unsigned char *p = in, *stop = in + len;
    Py_ssize_t n = 0, lines = 0;
    unsigned bad = 0;
    while (p < stop) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(stop - p));
        Py_ssize_t run = (nl ? nl : stop) - p;
        memcpy(d + n, p, (size_t)run);
#if defined(__x86_64__) && defined(__GNUC__)
        if (cleaner->simd)
            bad |= simd_line(p, run, &cleaner->ns, table, u + n);
        else
#endif
            bad |= scalar_line(p, run, table, u + n);
        n += run;
        if (bad || nl == NULL)
            break;
        lines++;
        p = nl + 1;
    }
    *kept = n;
    *newlines = lines;
    return !bad;
}

/* One record of a run: where it is, and what the worker threads made of it. */
typedef struct {
    Py_ssize_t pos, nl, nxt;  /* its '>' ('@'), the end of its header line, the end of its sequence
                                 text: FASTA, the '\n' before the next '>'; FASTQ, the byte before
                                 the sequence line's '\n' */
    Py_ssize_t qpos, qlen;    /* FASTQ: its quality line (qlen -1: no quality) */
    Py_ssize_t offset;        /* of its cleaned text in the scratch buffers */
    Py_ssize_t n, newlines;
    int plain;
    unsigned char md5[16], sha[64];
} Span;

typedef struct {
    const unsigned char *buf;
    const Cleaner *cleaner;
    unsigned char *data, *norm;
    Span *spans;
    Py_ssize_t first, last;
} Work;

/* Clean and hash spans[first:last]: no Python objects, so it runs without the GIL. */
static void *clean_and_hash(void *arg)
{
    Work *w = arg;
    for (Py_ssize_t k = w->first; k < w->last; k++) {
        Span *sp = &w->spans[k];
        unsigned char *d = w->data + sp->offset, *u = w->norm + sp->offset;
        sp->plain = clean_text(w->buf + sp->nl + 1, sp->nxt - sp->nl, w->cleaner, d, u, &sp->n, &sp->newlines);
        if (sp->plain && sp->qlen > 0) { /* FASTQ: every quality character in '!'..'~' */
            const unsigned char *q = w->buf + sp->qpos;
            unsigned bad = 0;
            for (Py_ssize_t i = 0; i < sp->qlen; i++)
                bad |= (unsigned char)(q[i] - 0x21) > 0x5d;
            sp->plain = !bad; /* Python takes the record from here and reports the character */
        }
        Py_ssize_t n = sp->n;
        if (sp->plain && !digests(u, (size_t)n, sp->md5, sp->sha))
            sp->plain = 0; /* Python redoes it and reports what is wrong */
    }
    return NULL;
}

static PyObject *record_of(const unsigned char *buf, const Span *sp, const unsigned char *data,
                           long long ordinal, long long line, PyObject *record_type)
{
    const unsigned char *header = buf + sp->pos + 1;
    Py_ssize_t hlen = sp->nl - sp->pos - 1;
    /* The header, split like str.split(None, 1) with the rest stripped. */
    Py_ssize_t s = 0;
    while (s < hlen && is_space(header[s]))
        s++;
    Py_ssize_t e = s;
    while (e < hlen && !is_space(header[e]))
        e++;
    Py_ssize_t r = e;
    while (r < hlen && is_space(header[r]))
        r++;
    Py_ssize_t end = hlen;
    while (end > r && is_space(header[end - 1]))
        end--;

    PyObject *items[10] = {NULL};
    items[0] = PyLong_FromLongLong(ordinal);
    items[1] = PyLong_FromLongLong(line);
    items[2] = ascii_str(header, hlen);
    items[3] = ascii_str(header + s, e - s);
    items[4] = ascii_str(header + r, end - r);
    items[5] = PyBytes_FromStringAndSize((const char *)data + sp->offset, sp->n);
    items[6] = PyUnicode_New(32, 127);
    items[7] = PyUnicode_New(35, 127);
    items[8] = sp->qlen < 0 ? Py_NewRef(Py_None) : PyBytes_FromStringAndSize((const char *)buf + sp->qpos, sp->qlen);
    items[9] = Py_NewRef(Py_None);
    PyObject *record = NULL;
    int complete = 1;
    for (int i = 0; i < 10; i++)
        if (items[i] == NULL)
            complete = 0;
    if (complete) {
        Py_UCS1 *h = PyUnicode_1BYTE_DATA(items[6]);
        for (int i = 0; i < 16; i++) {
            h[2 * i] = (Py_UCS1)HEX[sp->md5[i] >> 4];
            h[2 * i + 1] = (Py_UCS1)HEX[sp->md5[i] & 15];
        }
        Py_UCS1 *g = PyUnicode_1BYTE_DATA(items[7]);
        g[0] = 'S';
        g[1] = 'Q';
        g[2] = '.';
        for (int i = 0, o = 3; i < 24; i += 3, o += 4) { /* 24 bytes: no padding */
            unsigned v = ((unsigned)sp->sha[i] << 16) | ((unsigned)sp->sha[i + 1] << 8) | sp->sha[i + 2];
            g[o] = (Py_UCS1)B64URL[(v >> 18) & 63];
            g[o + 1] = (Py_UCS1)B64URL[(v >> 12) & 63];
            g[o + 2] = (Py_UCS1)B64URL[(v >> 6) & 63];
            g[o + 3] = (Py_UCS1)B64URL[v & 63];
        }
        record = ((PyTypeObject *)record_type)->tp_alloc((PyTypeObject *)record_type, 10);
    }
    if (record == NULL) {
        for (int i = 0; i < 10; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (int i = 0; i < 10; i++)
        PyTuple_SET_ITEM(record, i, items[i]); /* steals */
    /* Only ints, strings, bytes and None inside: it can never be part of a cycle, so the cyclic
       collector need not walk the hundreds of thousands of these a large file makes. */
    PyObject_GC_UnTrack(record);
    return record;
}

/* --- The helper thread ----------------------------------------------------------------------------
 *
 * Each round hands part of its hashing to a second thread. Starting a thread per round was a cost
 * of its own on short reads (a million 200-base reads made ~2,500 rounds of 512, and each
 * pthread_create and join is tens of microseconds of kernel time on the calling thread),
 * so each thread that calls in keeps one helper, started on its first round and waiting on a
 * condition variable between jobs. It is stopped and joined when that thread ends (the key's
 * destructor); a forked child forgets its parent's (the thread is not there) and starts its own.
 * The helper blocks every signal: they stay with the interpreter's threads.
 */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    void *(*job)(void *); /* NULL: idle */
    void *arg;
    int quit;
    pthread_t thread;
} Helper;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A few microseconds' spin, for another thread to finish a short piece of work; past that
   (that thread was descheduled on a busy machine) give the core away each time instead. */
#define SPIN_PAUSES 1024
static inline void wait_a_little(int *spins)
{
    if (*spins < SPIN_PAUSES) {
        ++*spins;
        cpu_relax();
    } else {
        sched_yield();
    }
}

static pthread_key_t helper_key;
static pthread_once_t helper_once = PTHREAD_ONCE_INIT;
static int helper_key_ok;

/* Its name in /proc/PID/task/TID/comm (top -H, the tests): at most 15 characters. */
#define HELPER_NAME "engine-helper"

static void *helper_main(void *p)
{
    Helper *h = p;
#ifdef __GLIBC__
    pthread_setname_np(pthread_self(), HELPER_NAME);
#endif
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (h->job == NULL && !h->quit)
            pthread_cond_wait(&h->wake, &h->lock);
        if (h->job == NULL)
            break;
        void *(*job)(void *) = h->job;
        void *arg = h->arg;
        pthread_mutex_unlock(&h->lock);
        job(arg);
        pthread_mutex_lock(&h->lock);
        h->job = NULL;
        pthread_cond_signal(&h->done);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* The calling thread ends: its helper is told to quit and joined. */
static void helper_stop(void *p)
{
    Helper *h = p;
    pthread_mutex_lock(&h->lock);
    h->quit = 1;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    pthread_cond_destroy(&h->wake);
    pthread_cond_destroy(&h->done);
    pthread_mutex_destroy(&h->lock);
    PyMem_RawFree(h);
}

/* In a forked child only the forking thread exists: the helper it remembers is gone (its memory
   is left, as its lock may have been held at the fork). */
static void helper_forget(void)
{
    if (helper_key_ok)
        pthread_setspecific(helper_key, NULL);
}

static void helper_key_init(void)
{
    helper_key_ok = pthread_key_create(&helper_key, helper_stop) == 0 &&
                    pthread_atfork(NULL, NULL, helper_forget) == 0;
}

/* This thread's helper, started if need be; NULL if it cannot be (the caller works alone). */
static Helper *helper_get(void)
{
    pthread_once(&helper_once, helper_key_init);
    if (!helper_key_ok)
        return NULL;
    Helper *h = pthread_getspecific(helper_key);
    if (h != NULL)
        return h;
    h = PyMem_RawCalloc(1, sizeof(Helper));
    if (h == NULL)
        return NULL;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int started = pthread_mutex_init(&h->lock, NULL) == 0 && pthread_cond_init(&h->wake, NULL) == 0 &&
                  pthread_cond_init(&h->done, NULL) == 0 && pthread_create(&h->thread, NULL, helper_main, h) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!started || pthread_setspecific(helper_key, h) != 0) {
        if (started)
            helper_stop(h);
        else
            PyMem_RawFree(h);
        return NULL;
    }
    return h;
}

/* Hand ``job(arg)`` to this thread's helper; 0 if there is none (then the caller does it). */
static int helper_start(void *(*job)(void *), void *arg)
{
    Helper *h = helper_get();
    if (h == NULL)
        return 0;
    pthread_mutex_lock(&h->lock);
    h->job = job;
    h->arg = arg;
    pthread_cond_signal(&h->wake);
    pthread_mutex_unlock(&h->lock);
    return 1;
}

/* Wait until the job handed over by helper_start is done. */
static void helper_wait(void)
{
    Helper *h = pthread_getspecific(helper_key);
    pthread_mutex_lock(&h->lock);
    while (h->job != NULL)
        pthread_cond_wait(&h->done, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

/* Records per round: scan (GIL held), clean and hash (two threads, GIL released), build objects. */
#define ROUND 4096

/* Scratch space, kept per thread between calls: fresh memory for every chunk would cost a page
   fault per 4 KiB. Bounded by the largest chunk a thread has parsed. */
static __thread Span *tls_spans;
static __thread unsigned char *tls_data, *tls_norm;
static __thread Py_ssize_t tls_size;
/* Below this many records a second thread is not worth starting. */
#define PARALLEL_MIN 64

/* Append the events of spans[0:count] (cleaned text in ``data``) up to the first record that is not
   plain, advancing ordinal, line and pos; returns how many were appended, -1 on error. */
static Py_ssize_t emit_spans(const unsigned char *buf, const Span *spans, const unsigned char *data, Py_ssize_t count,
                             long long *ordinal, long long *line, Py_ssize_t *pos, int fasta, PyObject *out,
                             PyObject *record_type)
{
    Py_ssize_t k = 0;
    for (; k < count && spans[k].plain; k++) {
        PyObject *record = record_of(buf, &spans[k], data, *ordinal + 1, *line, record_type);
        if (record == NULL)
            return -1;
        int appended = PyList_Append(out, record);
        Py_DECREF(record);
        if (appended < 0)
            return -1;
        *ordinal += 1;
        if (fasta) {
            *line += 1 + spans[k].newlines;
            *pos = spans[k].nxt + 1;
        } else {
            *line += 4;
            *pos = spans[k].qpos + spans[k].qlen + 1;
        }
    }
    return k;
}

/*
 * Clean and hash spans[0:count] (two threads, the GIL released), then append their events up to the
 * first record that is not plain. Advances ordinal, line (1 + newlines of each FASTA record, 4 per
 * FASTQ record) and pos. Returns how many were emitted, -1 on error.
 */
static Py_ssize_t emit_round(const unsigned char *buf, const unsigned char *table, Span *spans, Py_ssize_t count,
                             Py_ssize_t text, long long *ordinal, long long *line, Py_ssize_t *pos, int fasta,
                             PyObject *out, PyObject *record_type)
{
    if (text > tls_size) {
        PyMem_RawFree(tls_data);
        PyMem_RawFree(tls_norm);
        tls_data = PyMem_RawMalloc((size_t)(text ? text : 1));
        tls_norm = PyMem_RawMalloc((size_t)(text ? text : 1));
        tls_size = (tls_data && tls_norm) ? text : 0;
        if (tls_data == NULL || tls_norm == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    Cleaner cleaner;
    cleaner_init(&cleaner, table);
    Work halves[2] = {
        {buf, &cleaner, tls_data, tls_norm, spans, 0, count / 2},
        {buf, &cleaner, tls_data, tls_norm, spans, count / 2, count},
    };
    int threaded = 0;
    Py_BEGIN_ALLOW_THREADS
    if (count >= PARALLEL_MIN)
        threaded = helper_start(clean_and_hash, &halves[1]);
    if (!threaded)
        halves[0].last = count;
    clean_and_hash(&halves[0]);
    if (threaded)
        helper_wait();
    Py_END_ALLOW_THREADS

    return emit_spans(buf, spans, tls_data, count, ordinal, line, pos, fasta, out, record_type);
}

/* Checks the arguments every run shares (0: TypeError set). */
static int run_args_ok(const Py_buffer *letters, PyObject *record_type)
{
    if (letters->len != 256 || !PyType_Check(record_type) ||
        !PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "letters must be 256 bytes and record_type a tuple type");
        return 0;
    }
    return 1;
}

/* The same, then this thread's span array for a FASTA run (NULL: error set). */
static Span *run_spans(const Py_buffer *letters, PyObject *record_type)
{
    if (!run_args_ok(letters, record_type))
        return NULL;
    if (tls_spans == NULL && (tls_spans = PyMem_RawMalloc(sizeof(Span) * ROUND)) == NULL)
        PyErr_NoMemory();
    return tls_spans;
}

/* Printable ASCII or TAB: a header or title C may take as it is. Anything else (non-ASCII, or a
   control character, which Python reports as invalid_character with its column) goes to Python. */
static int plain_text(const unsigned char *s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] >= 0x7f)
            return 0;
    return 1;
}

/* --- FASTQ: blocks hashed on two threads, emitted as they are ready -------------------------------
 *
 * A run of reads is taken in rounds of at most FASTQ_ROUND records (one round per 512 KiB piece
 * in practice), cut into blocks of CLAIM. Both threads claim blocks in order and clean and hash
 * them; the calling thread, which alone may build objects (it holds the GIL), emits each block as
 * soon as it is hashed and otherwise hashes the next unclaimed one, the GIL released meanwhile
 * for the process's other threads. Hashing costs about three times what building a read's objects
 * does, so the calling thread spends most of a round hashing beside the helper: nothing waits but
 * the last block. (Rounds of 512 that were hashed ahead while the previous round was emitted left
 * the first round of every piece hashed before any object was built, and the helper idle while
 * the last was built: 0.25 s and 0.17 s of a 1.2 s run over a million reads. This schedule took
 * 13-16 % off plain FASTQ. On FASTQ.gz the inflater is a third busy thread for two cores, and the
 * earlier schedule, which left it a core more often, took 8-10 % less time: README, "Parsing
 * engine against Biopython".) A round stops at the first record that is not plain, which Python
 * then takes.
 */

/* Spans a thread claims at a time from a round. */
#define CLAIM 64
/* Records per FASTQ round: bounds the scratch space, and a piece of 512 KiB (about 1,200 short
   reads) fits in one round. */
#ifndef FASTQ_ROUND
#define FASTQ_ROUND 2048
#endif

typedef struct {
    Span *spans;
    unsigned char *data, *norm;
    Py_ssize_t size;
} Scratch;

static __thread Scratch fastq_scratch;

static int scratch_fit(Scratch *s, Py_ssize_t text)
{
    if (s->spans == NULL && (s->spans = PyMem_RawMalloc(sizeof(Span) * FASTQ_ROUND)) == NULL)
        return -1;
    if (text > s->size) {
        PyMem_RawFree(s->data);
        PyMem_RawFree(s->norm);
        s->data = PyMem_RawMalloc((size_t)(text ? text : 1));
        s->norm = PyMem_RawMalloc((size_t)(text ? text : 1));
        s->size = (s->data && s->norm) ? text : 0;
        if (s->data == NULL || s->norm == NULL)
            return -1;
    }
    return 0;
}

typedef struct {
    const unsigned char *buf;
    const Cleaner *cleaner;
    Scratch *scratch;
    Py_ssize_t scanned; /* spans scanned so far, published a block at a time (release/acquire) */
    int final;          /* the scan is over: ``count`` is the round's size (release/acquire) */
    Py_ssize_t count;
    Py_ssize_t next;    /* the first span not yet claimed (__atomic_fetch_add) */
    int ready[(FASTQ_ROUND + CLAIM - 1) / CLAIM]; /* block b hashed (futex words) */
    int waiting;        /* the calling thread sleeps on a block: the helper wakes it */
} Round;

/* Mark block b hashed, and wake the calling thread if it sleeps on it. Both sides use sequentially
   consistent order (ready then waiting here; waiting then ready there), so one of them sees the
   other's store: the calling thread never sleeps on a block already marked. */
static void block_done(Round *r, Py_ssize_t b)
{
    __atomic_store_n(&r->ready[b], 1, __ATOMIC_SEQ_CST);
#ifdef __linux__
    if (__atomic_load_n(&r->waiting, __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &r->ready[b], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#endif
}

/* The calling thread waits for block b, which the helper is on: a short spin, then it sleeps
   instead of taking a core the helper (descheduled on a busy machine) or another thread needs. */
static void block_wait(Round *r, Py_ssize_t b)
{
    for (int spins = 0; spins < SPIN_PAUSES; spins++) {
        if (__atomic_load_n(&r->ready[b], __ATOMIC_ACQUIRE))
            return;
        cpu_relax();
    }
#ifdef __linux__
    __atomic_store_n(&r->waiting, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&r->ready[b], __ATOMIC_SEQ_CST)) {
        struct timespec ms = {0, 1000000}; /* a lost wake-up costs a millisecond, not a hang */
        syscall(SYS_futex, &r->ready[b], FUTEX_WAIT_PRIVATE, 0, &ms, NULL, 0);
    }
    __atomic_store_n(&r->waiting, 0, __ATOMIC_SEQ_CST);
#else
    while (!__atomic_load_n(&r->ready[b], __ATOMIC_ACQUIRE))
        sched_yield();
#endif
}

/* Claim, clean and hash one block of the round; 0 if none was left. */
static int work_block(Round *r)
{
    Py_ssize_t k = __atomic_fetch_add(&r->next, CLAIM, __ATOMIC_RELAXED);
    if (k >= FASTQ_ROUND)
        return 0;
    Py_ssize_t last = k + CLAIM;
    for (int spins = 0;; wait_a_little(&spins)) { /* the scan is ahead but for the first blocks */
        if (__atomic_load_n(&r->final, __ATOMIC_ACQUIRE)) {
            if (k >= r->count)
                return 0;
            if (last > r->count)
                last = r->count;
            break;
        }
        if (__atomic_load_n(&r->scanned, __ATOMIC_ACQUIRE) >= last)
            break;
    }
    Work w = {r->buf, r->cleaner, r->scratch->data, r->scratch->norm, r->scratch->spans, k, last};
    clean_and_hash(&w);
    block_done(r, k / CLAIM);
    return 1;
}

/* The helper's job: blocks until none is left. */
static void *work_round_thread(void *arg)
{
    while (work_block(arg))
        ;
    return NULL;
}

/* The index of the '\n' that ends the line starting at buf[from]; -1 if the chunk ends first. */
static inline Py_ssize_t line_end(const unsigned char *buf, Py_ssize_t from, Py_ssize_t size)
{
    const unsigned char *e = from < size ? memchr(buf + from, '\n', (size_t)(size - from)) : NULL;
    return e == NULL ? -1 : e - buf;
}

/* Up to ``want`` records that look like plain four-line reads from buf[pos], an '@' at a line
   start: their spans, their sequence text's offsets continuing from *text (which it advances), and
   where the last one ends. */
static Py_ssize_t scan_fastq(const unsigned char *buf, Py_ssize_t size, Py_ssize_t pos, Py_ssize_t want,
                             Py_ssize_t max_read, Py_ssize_t max_title, Span *spans, Py_ssize_t *text_io,
                             Py_ssize_t *end_out)
{
    Py_ssize_t count = 0, text = *text_io, at = pos;
    while (count < want && at < size && buf[at] == '@') {
        /* The ends of its four lines: title, sequence, '+' line, quality. */
        Py_ssize_t n1 = line_end(buf, at, size);
        Py_ssize_t n2 = n1 < 0 ? -1 : line_end(buf, n1 + 1, size);
        if (n2 < 0 || n2 + 1 >= size || buf[n2 + 1] != '+')
            break;
        Py_ssize_t n3 = line_end(buf, n2 + 1, size);
        Py_ssize_t n4 = n3 < 0 ? -1 : line_end(buf, n3 + 1, size);
        if (n4 < 0)
            break;
        const unsigned char *title = buf + at + 1, *plus = buf + n2 + 2, *qual = buf + n3 + 1;
        Py_ssize_t tlen = n1 - at - 1, slen = n2 - n1 - 1, plen = n3 - n2 - 2, qlen = n4 - n3 - 1;
        if (slen != qlen || slen > max_read || tlen > max_title || (tlen > 0 && title[tlen - 1] == '\r') ||
            (qlen > 0 && qual[qlen - 1] == '\r') || !plain_text(title, tlen) ||
            (plen > 0 && (plen != tlen || memcmp(plus, title, (size_t)tlen) != 0)))
            break;
        /* The quality's characters are checked beside the hashing (clean_and_hash). */
        /* The sequence is cleaned as FASTA text ending just before its newline. */
        spans[count] = (Span){.pos = at, .nl = n1, .nxt = n2 - 1, .qpos = n3 + 1, .qlen = qlen, .offset = text};
        text += slen;
        count++;
        at = n4 + 1;
    }
    *text_io = text;
    *end_out = at;
    return count;
}

/*
 * fastq_records(data, pos, line, ordinal, max_ordinal, max_read, max_title, letters, out, record_type)
 *     -> (pos, line, ordinal)
 *
 * data[pos] is an '@' at a line start. Consumes plain four-line records: a printable ASCII title
 * (TAB allowed) of at most max_title bytes, a sequence line of the alphabet's letters, a '+' line
 * empty or repeating the title, a
 * quality line of the same length in '!'..'~', each ending in '\n'. Anything else stops the run
 * at that record for Python's line-by-line path, which handles it or reports its error.
 */
static PyObject *fastq_records(PyObject *self, PyObject *args)
{
    Py_buffer chunk, letters;
    Py_ssize_t pos, max_read, max_title;
    long long line, ordinal, max_ordinal;
    PyObject *out, *record_type;
    if (!PyArg_ParseTuple(args, "y*nLLLnny*O!O", &chunk, &pos, &line, &ordinal, &max_ordinal, &max_read, &max_title,
                          &letters, &PyList_Type, &out, &record_type))
        return NULL;
    PyObject *result = NULL;
    if (!run_args_ok(&letters, record_type))
        goto done;
    const unsigned char *buf = chunk.buf;
    Py_ssize_t size = chunk.len;
    Cleaner cleaner;
    cleaner_init(&cleaner, letters.buf);
    Scratch *sc = &fastq_scratch;
    if (scratch_fit(sc, 0) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (;;) {
        /* Text is at most what is left of the chunk: scratch space sized once, never moved under
           the helper. */
        if (scratch_fit(sc, size - pos) < 0) {
            PyErr_NoMemory();
            goto done;
        }
        Round round = {.buf = buf, .cleaner = &cleaner, .scratch = sc};
        /* Scanned a block at a time; the helper starts on the first block while the rest is scanned.
           It never takes the GIL, so the hand-over needs no release of it. */
        int threaded = 0;
        long long room = max_ordinal - ordinal;
        Py_ssize_t count = 0, text = 0, end = pos;
        for (;;) {
            Py_ssize_t want = FASTQ_ROUND - count < CLAIM ? FASTQ_ROUND - count : CLAIM;
            if (room - count < want)
                want = (Py_ssize_t)(room - count);
            Py_ssize_t n =
                want > 0 ? scan_fastq(buf, size, end, want, max_read, max_title, sc->spans + count, &text, &end) : 0;
            count += n;
            if (n < want || n == 0)
                break;
            __atomic_store_n(&round.scanned, count, __ATOMIC_RELEASE);
            if (!threaded && count >= PARALLEL_MIN)
                threaded = helper_start(work_round_thread, &round);
        }
        round.count = count;
        __atomic_store_n(&round.final, 1, __ATOMIC_RELEASE);
        if (count == 0) /* no helper either: it starts once a whole block is scanned */
            break;
        Py_ssize_t emitted = 0; /* -1: an error is set */
        for (Py_ssize_t lo = 0; lo < count; lo += CLAIM) {
            Py_ssize_t b = lo / CLAIM;
            if (!__atomic_load_n(&round.ready[b], __ATOMIC_ACQUIRE)) { /* hash until it is, without the GIL */
                Py_BEGIN_ALLOW_THREADS
                while (!__atomic_load_n(&round.ready[b], __ATOMIC_ACQUIRE))
                    if (!work_block(&round))
                        block_wait(&round, b); /* the helper is on it */
                Py_END_ALLOW_THREADS
            }
            Py_ssize_t n = count - lo < CLAIM ? count - lo : CLAIM;
            Py_ssize_t k = emit_spans(buf, sc->spans + lo, sc->data, n, &ordinal, &line, &pos, 0, out, record_type);
            if (k < 0) {
                emitted = -1;
                break;
            }
            emitted += k;
            if (k < n)
                break;
        }
        if (threaded) { /* nothing more to claim, then wait for the block the helper may be on */
            __atomic_fetch_add(&round.next, count, __ATOMIC_RELAXED);
            Py_BEGIN_ALLOW_THREADS
            helper_wait();
            Py_END_ALLOW_THREADS
        }
        if (emitted < 0)
            goto done;
        if (emitted < count || count < FASTQ_ROUND)
            break;
    }
    result = Py_BuildValue("nLL", pos, line, ordinal);
done:
    PyBuffer_Release(&chunk);
    PyBuffer_Release(&letters);
    return result;
}

/*
 * whole_records(chunk, pos, limit, line, ordinal, max_ordinal, max_header, letters, out, record_type)
 *     -> (pos, line, ordinal)
 *
 * chunk[pos] is a '>' at a line start. Consumes whole records while the next '>' at a line start is
 * found before ``limit``; ``letters`` is a 256-byte table (non-zero: a letter of the alphabet).
 * Returns where it stopped, the line number there and the last ordinal used.
 */
static PyObject *whole_records(PyObject *self, PyObject *args)
{
    Py_buffer chunk, letters;
    Py_ssize_t pos, limit, max_header;
    long long line, ordinal, max_ordinal;
    PyObject *out, *record_type;
    if (!PyArg_ParseTuple(args, "y*nnLLLny*O!O", &chunk, &pos, &limit, &line, &ordinal, &max_ordinal, &max_header,
                          &letters, &PyList_Type, &out, &record_type))
        return NULL;
    PyObject *result = NULL;
    Span *spans = run_spans(&letters, record_type);
    if (spans == NULL)
        goto done;
    const unsigned char *buf = chunk.buf;
    if (limit > chunk.len)
        limit = chunk.len;

    for (;;) {
        /* Scan: the spans of up to ROUND records with a plain header. */
        Py_ssize_t count = 0, text = 0, at = pos;
        while (count < ROUND && ordinal + count < max_ordinal && at < limit) {
            const unsigned char *nlp = memchr(buf + at, '\n', (size_t)(chunk.len - at));
            if (nlp == NULL)
                break;
            Py_ssize_t nl = nlp - buf;
            if (nl - at > max_header || limit - nl < 2)
                break;
            /* The next '>' at a line start: memchr for '>' (rare in headers, absent from sequences). */
            Py_ssize_t nxt = -1;
            for (Py_ssize_t from = nl + 1; from < limit;) {
                const unsigned char *gt = memchr(buf + from, '>', (size_t)(limit - from));
                if (gt == NULL)
                    break;
                if (gt[-1] == '\n') {
                    nxt = gt - 1 - buf;
                    break;
                }
                from = gt - buf + 1;
            }
            if (nxt < 0)
                break;
            const unsigned char *header = buf + at + 1;
            Py_ssize_t hlen = nl - at - 1;
            if ((hlen > 0 && header[hlen - 1] == '\r') || !plain_text(header, hlen))
                break;
            spans[count] = (Span){.pos = at, .nl = nl, .nxt = nxt, .qlen = -1, .offset = text};
            text += nxt - nl;
            count++;
            at = nxt + 1;
        }
        if (count == 0)
            break;
        Py_ssize_t k = emit_round(buf, letters.buf, spans, count, text, &ordinal, &line, &pos, 1, out, record_type);
        if (k < 0)
            goto done;
        if (k < count || count < ROUND)
            break; /* stopped at a record Python must handle, or at the end of the run */
    }
    result = Py_BuildValue("nLL", pos, line, ordinal);
done:
    PyBuffer_Release(&chunk);
    PyBuffer_Release(&letters);
    return result;
}

/*
 * clean(raw, letters) -> (residues, checksum_input) | None
 * clean_into(raw, letters, checksum_buffer) -> (residues, newlines) | None
 *
 * Sequence text of any size in one pass: newlines removed, every other byte checked against the
 * 256-byte ``letters`` table, the checksum input upper-cased (``clean_into`` writes it to the
 * start of a reusable bytearray at least as long as ``raw``, sparing a fresh allocation per
 * piece). None when anything but letters and newlines is present: the caller's slower path removes
 * other whitespace and gaps or reports the invalid character with its position.
 */
static PyObject *clean_impl(PyObject *args, int into)
{
    Py_buffer raw, letters, target = {0};
    int ok = into ? PyArg_ParseTuple(args, "y*y*w*", &raw, &letters, &target) : PyArg_ParseTuple(args, "y*y*", &raw, &letters);
    if (!ok)
        return NULL;
    PyObject *result = NULL, *data = NULL, *norm = NULL;
    if (letters.len != 256 || (into && target.len < raw.len)) {
        PyErr_SetString(PyExc_ValueError, "letters must be 256 bytes and the buffer as long as the text");
        goto done;
    }
    data = PyBytes_FromStringAndSize(NULL, raw.len);
    if (data == NULL)
        goto done;
    unsigned char *u;
    if (into) {
        u = target.buf;
    } else {
        norm = PyBytes_FromStringAndSize(NULL, raw.len);
        if (norm == NULL)
            goto done;
        u = (unsigned char *)PyBytes_AS_STRING(norm);
    }
    Py_ssize_t n = 0, newlines = 0;
    int plain;
    Py_BEGIN_ALLOW_THREADS
    Cleaner cleaner;
    cleaner_init(&cleaner, letters.buf);
    plain = clean_text(raw.buf, raw.len, &cleaner, (unsigned char *)PyBytes_AS_STRING(data), u, &n, &newlines);
    Py_END_ALLOW_THREADS
    if (!plain) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&data, n) < 0)
        goto done;
    if (into) {
        result = Py_BuildValue("On", data, newlines);
    } else {
        if (_PyBytes_Resize(&norm, n) < 0)
            goto done;
        result = PyTuple_Pack(2, data, norm);
    }
done:
    Py_XDECREF(data);
    Py_XDECREF(norm);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&letters);
    if (into && target.obj != NULL)
        PyBuffer_Release(&target);
    return result;
}

static PyObject *clean(PyObject *self, PyObject *args)
{
    return clean_impl(args, 0);
}

static PyObject *clean_into(PyObject *self, PyObject *args)
{
    return clean_impl(args, 1);
}

/*
 * share_malloc_arena() -> None
 *
 * glibc gives every thread that allocates its own malloc arena, and an arena keeps the pages of
 * the large buffers freed into it; with the engine's worker threads inflating and hashing
 * megabyte pieces, that alone added ~50 MiB to the parser's peak RSS. Called once, before the
 * workers start: from then on new threads share the main arena.
 */
static PyObject *share_malloc_arena(PyObject *self, PyObject *unused)
{
#ifdef __GLIBC__
    mallopt(M_ARENA_MAX, 1);
#endif
    Py_RETURN_NONE;
}

/* The GA4GH digest (SHA-512, first 24 bytes, base64url) of a canonical name-length pair,
   {"length":N,"name":"NAME"}: an element of a sequence collection's sorted_name_length_pairs
   (shared/domain/seqcol.py:pair_digest). Only for a plain name -- printable ASCII without '"' or '\\', its
   own JSON string once quoted -- else None, and Python's canonical JSON takes it. */
static PyObject *pair_digest(PyObject *self, PyObject *args)
{
    PyObject *name;
    long long length;
    (void)self;
    if (!PyArg_ParseTuple(args, "UL:pair_digest", &name, &length))
        return NULL;
    if (!PyUnicode_IS_ASCII(name))
        Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(name);
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            Py_RETURN_NONE;
    }
    char digits[24];
    int d = snprintf(digits, sizeof digits, "%lld", length);
    SHA512_CTX ctx;
    unsigned char sha[64];
    if (!(SHA512_Init(&ctx) && SHA512_Update(&ctx, "{\"length\":", 10) && SHA512_Update(&ctx, digits, (size_t)d) &&
          SHA512_Update(&ctx, ",\"name\":\"", 9) && SHA512_Update(&ctx, s, (size_t)n) &&
          SHA512_Update(&ctx, "\"}", 2) && SHA512_Final(sha, &ctx))) {
        PyErr_SetString(PyExc_RuntimeError, "SHA-512 failed");
        return NULL;
    }
    unsigned char out[32];
    for (int i = 0, o = 0; i < 24; i += 3) {
        unsigned v = ((unsigned)sha[i] << 16) | ((unsigned)sha[i + 1] << 8) | sha[i + 2];
        out[o++] = (unsigned char)B64URL[(v >> 18) & 63];
        out[o++] = (unsigned char)B64URL[(v >> 12) & 63];
        out[o++] = (unsigned char)B64URL[(v >> 6) & 63];
        out[o++] = (unsigned char)B64URL[v & 63];
    }
    return ascii_str(out, 32);
}

static PyMethodDef methods[] = {
    {"pair_digest", pair_digest, METH_VARARGS, "The GA4GH digest of a plain name's canonical name-length pair."},
    {"share_malloc_arena", share_malloc_arena, METH_NOARGS, "Let threads started from now on share malloc's main arena."},
    {"fastq_records", fastq_records, METH_VARARGS, "Consume a run of plain four-line FASTQ records."},
    {"clean", clean, METH_VARARGS, "Strip newlines, check letters and upper-case a piece of sequence text."},
    {"clean_into", clean_into, METH_VARARGS, "clean, with the upper-cased text written to a reusable buffer."},
    {"whole_records", whole_records, METH_VARARGS, "Consume a run of plain whole FASTA records from a chunk."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native(void)
{
    return PyModule_Create(&module);
}
