/* A compact HMAC-SHA1 (RFC 2104) for libsrtp's AES_CM_128_HMAC_SHA1_80/_32 suites (why:
 * docs/architecture.md, "Written by hand, and why").
 *
 * libsrtp on OpenSSL 3 keys HMAC-SHA1 through EVP_MAC: every packet re-initialises a chain of
 * provider contexts (three digest contexts, a fresh SHA-1 state allocated and freed twice) spread
 * over many small allocations. Each leg's context is touched once per 20 ms tick, so on a media
 * core that chain is cold and its cache misses cost more than the hashing. This auth type keeps one
 * session's whole HMAC state in one allocation: the SHA-1 states after absorbing key ^ ipad and
 * key ^ opad, and the running state. The hashing is still OpenSSL's (SHA1_Update, with the CPU's
 * SHA instructions): only the HMAC construction, two precomputed pads, is ours.
 *
 * `install(path, True)` finds SHA1_Init/Update/Final, OPENSSL_cleanse and srtp_replace_auth_type
 * in the already loaded library at `path` (pylibsrtp's binding, which links libsrtp and OpenSSL in)
 * and makes this type libsrtp's SRTP_HMAC_SHA1. libsrtp runs its own HMAC-SHA1 test vector and ours
 * (RFC 2202's cases 2 and 6) before it accepts it; sessions made after that use it, sessions made
 * before keep theirs. `install(path, False)` puts libsrtp's own back (the benchmarks compare the
 * two). Returns libsrtp's status (0: done), or raises OSError when a symbol is missing, and changes
 * nothing then. libsrtp's list of types has no lock: install while no other thread makes sessions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libsrtp 2's auth type interface (crypto/include/auth.h, a public header of libsrtp 2.x). */
#define SRTP_HMAC_SHA1 3
#define STATUS_OK 0
#define STATUS_BAD_PARAM 2
#define STATUS_ALLOC_FAIL 3

typedef struct srtp_auth_t srtp_auth_t;

typedef struct auth_test_case {
    int key_length_octets;
    const uint8_t *key;
    int data_length_octets;
    const uint8_t *data;
    int tag_length_octets;
    const uint8_t *tag;
    const struct auth_test_case *next_test_case;
} auth_test_case;

typedef struct {
    int (*alloc)(srtp_auth_t **auth, int key_len, int out_len);
    int (*dealloc)(srtp_auth_t *auth);
    int (*init)(void *state, const uint8_t *key, int key_len);
    int (*compute)(void *state, const uint8_t *buffer, int octets, int tag_len, uint8_t *tag);
    int (*update)(void *state, const uint8_t *buffer, int octets);
    int (*start)(void *state);
    const char *description;
    const auth_test_case *test_data;
    int id;
} auth_type;

struct srtp_auth_t {
    const auth_type *type;
    void *state;
    int out_len;
    int key_len;
    int prefix_len;
};

/* OpenSSL's SHA_CTX (openssl/sha.h, unchanged since 0.9): declared here so that the build needs no
 * OpenSSL headers; the functions are the binding's own. */
typedef struct {
    unsigned int h0, h1, h2, h3, h4, Nl, Nh, data[16];
    unsigned int num;
} sha_ctx;

#define SHA1_BLOCK 64
#define SHA1_DIGEST 20

static int (*sha1_init)(sha_ctx *);
static int (*sha1_update)(sha_ctx *, const void *, size_t);
static int (*sha1_final)(unsigned char *, sha_ctx *);
static void (*cleanse)(void *, size_t);

/* One session's HMAC, libsrtp's srtp_auth_t first: one allocation, a few adjacent cache lines. */
typedef struct {
    srtp_auth_t auth;
    sha_ctx inner; /* after key ^ ipad */
    sha_ctx outer; /* after key ^ opad */
    sha_ctx running;
} compact_hmac;

static const auth_type compact_hmac_type;

static int
hmac_alloc(srtp_auth_t **auth, int key_len, int out_len)
{
    if (out_len < 0 || out_len > SHA1_DIGEST || key_len < 0)
        return STATUS_BAD_PARAM;
    compact_hmac *hmac = calloc(1, sizeof(compact_hmac));
    if (hmac == NULL)
        return STATUS_ALLOC_FAIL;
    hmac->auth.type = &compact_hmac_type;
    hmac->auth.state = hmac;
    hmac->auth.out_len = out_len;
    hmac->auth.key_len = key_len;
    *auth = &hmac->auth;
    return STATUS_OK;
}

static int
hmac_dealloc(srtp_auth_t *auth)
{
    cleanse(auth, sizeof(compact_hmac)); /* auth is the first member: the whole state */
    free(auth);
    return STATUS_OK;
}

static int
hmac_init(void *state, const uint8_t *key, int key_len)
{
    compact_hmac *hmac = state;
    unsigned char block[SHA1_BLOCK] = {0};
    int ok = key_len >= 0;
    if (ok && key_len > SHA1_BLOCK) { /* RFC 2104: a long key is hashed first */
        ok = sha1_init(&hmac->running) && sha1_update(&hmac->running, key, (size_t)key_len) &&
             sha1_final(block, &hmac->running);
    } else if (ok) {
        memcpy(block, key, (size_t)key_len);
    }
    for (int i = 0; i < SHA1_BLOCK; i++)
        block[i] ^= 0x36;
    ok = ok && sha1_init(&hmac->inner) && sha1_update(&hmac->inner, block, SHA1_BLOCK);
    for (int i = 0; i < SHA1_BLOCK; i++)
        block[i] ^= 0x36 ^ 0x5c;
    ok = ok && sha1_init(&hmac->outer) && sha1_update(&hmac->outer, block, SHA1_BLOCK);
    cleanse(block, sizeof block); /* on every path: it held the key */
    return ok ? STATUS_OK : STATUS_BAD_PARAM;
}

static int
hmac_start(void *state)
{
    compact_hmac *hmac = state;
    hmac->running = hmac->inner;
    return STATUS_OK;
}

static int
hmac_update(void *state, const uint8_t *buffer, int octets)
{
    compact_hmac *hmac = state;
    if (octets < 0 || !sha1_update(&hmac->running, buffer, (size_t)octets))
        return STATUS_BAD_PARAM;
    return STATUS_OK;
}

static int
hmac_compute(void *state, const uint8_t *buffer, int octets, int tag_len, uint8_t *tag)
{
    compact_hmac *hmac = state;
    unsigned char digest[SHA1_DIGEST];
    if (tag_len < 0 || tag_len > SHA1_DIGEST || octets < 0)
        return STATUS_BAD_PARAM;
    /* The inner hash done, the running state takes the outer one (start resets it). */
    int ok = sha1_update(&hmac->running, buffer, (size_t)octets) && sha1_final(digest, &hmac->running);
    hmac->running = hmac->outer;
    ok = ok && sha1_update(&hmac->running, digest, SHA1_DIGEST) && sha1_final(digest, &hmac->running);
    if (ok)
        memcpy(tag, digest, (size_t)tag_len);
    cleanse(digest, sizeof digest);
    return ok ? STATUS_OK : STATUS_BAD_PARAM;
}

/* RFC 2202's test cases 2 (a key shorter than the hash) and 6 (one longer than a block, hashed
 * first); libsrtp adds its own, with a 20-byte key as SRTP's are. */
static const uint8_t long_key[80] = {
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
    0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
};
static const uint8_t long_key_data[] = "Test Using Larger Than Block-Size Key - Hash Key First";
static const uint8_t long_key_tag[SHA1_DIGEST] = {
    0xaa, 0x4a, 0xe5, 0xe1, 0x52, 0x72, 0xd0, 0x0e, 0x95, 0x70,
    0x56, 0x37, 0xce, 0x8a, 0x3b, 0x55, 0xed, 0x40, 0x21, 0x12,
};
static const auth_test_case long_key_case = {
    80, long_key, 54, long_key_data, SHA1_DIGEST, long_key_tag, NULL,
};
static const uint8_t short_key[] = "Jefe";
static const uint8_t short_key_data[] = "what do ya want for nothing?";
static const uint8_t short_key_tag[SHA1_DIGEST] = {
    0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74,
    0x16, 0xd5, 0xf1, 0x84, 0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79,
};
static const auth_test_case rfc2202_cases = {
    4, short_key, 28, short_key_data, SHA1_DIGEST, short_key_tag, &long_key_case,
};

static const auth_type compact_hmac_type = {
    .alloc = hmac_alloc,
    .dealloc = hmac_dealloc,
    .init = hmac_init,
    .compute = hmac_compute,
    .update = hmac_update,
    .start = hmac_start,
    .description = "hmac sha-1, compact state (bridgeline)",
    .test_data = &rfc2202_cases,
    .id = SRTP_HMAC_SHA1,
};

static PyObject *
install(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *encoded;
    if (nargs != 2 || !PyBool_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "install(binding_path, compact: bool)");
        return NULL;
    }
    if (!PyUnicode_FSConverter(args[0], &encoded))
        return NULL;
    void *library = dlopen(PyBytes_AS_STRING(encoded), RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(encoded);
    if (library == NULL) {
        PyErr_SetString(PyExc_OSError, "the libsrtp binding is not loaded");
        return NULL;
    }
    void *init = dlsym(library, "SHA1_Init"), *update = dlsym(library, "SHA1_Update");
    void *final = dlsym(library, "SHA1_Final"), *wipe = dlsym(library, "OPENSSL_cleanse");
    void *replace = dlsym(library, "srtp_replace_auth_type"), *libsrtps = dlsym(library, "srtp_hmac");
    dlclose(library); /* the binding stays loaded: Python holds it */
    if (!init || !update || !final || !wipe || !replace || !libsrtps) {
        PyErr_SetString(PyExc_OSError, "the libsrtp binding lacks SHA1_*, OPENSSL_cleanse or srtp_*");
        return NULL;
    }
    if (sha1_init == NULL) { /* once: a session of this type may be using them */
        sha1_init = (int (*)(sha_ctx *))init;
        sha1_update = (int (*)(sha_ctx *, const void *, size_t))update;
        sha1_final = (int (*)(unsigned char *, sha_ctx *))final;
        cleanse = (void (*)(void *, size_t))wipe;
    }
    int (*replace_auth)(const auth_type *, int) = (int (*)(const auth_type *, int))replace;
    const auth_type *chosen = args[1] == Py_True ? &compact_hmac_type : (const auth_type *)libsrtps;
    return PyLong_FromLong(replace_auth(chosen, SRTP_HMAC_SHA1));
}

static PyMethodDef functions[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL,
     "install(binding_path, compact) -> libsrtp status: new sessions' HMAC-SHA1, ours or libsrtp's"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = functions,
    .m_name = "bridgeline.media._srtp_hmac",
    .m_doc = "libsrtp's HMAC-SHA1 with its state in one allocation (see media/srtp.py)",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__srtp_hmac(void)
{
    return PyModule_Create(&module);
}
