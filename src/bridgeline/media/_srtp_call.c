/* One libsrtp call per packet, straight from C: media/srtp.py's hot path (why it is written by
 * hand: docs/architecture.md, "Written by hand, and why").
 *
 * A Processor pairs one of libsrtp 2's in-place functions (srtp_protect, srtp_unprotect,
 * srtp_unprotect_rtcp, all `int f(srtp_t session, void *packet, int *length)`) with one session.
 * Both come as addresses from pylibsrtp's own cffi binding (media/srtp.py checks the function
 * types there), so this file needs no libsrtp header or library: it calls the very libsrtp that
 * made the session. Calling a Processor with a packet copies it into the module's one buffer, runs
 * libsrtp on it in place and returns the result as new bytes; any status other than 0 calls
 * `refuse(status)` and raises the exception that returns. A packet longer than `max_packet` is
 * refused as libsrtp refuses a short one (srtp_err_status_bad_param), without calling libsrtp.
 * `protect_all` runs a whole tick's SRTP packets through their processors in one call from Python
 * (the runtime's, at the end of each tick), counting refusals instead of raising; `unprotect_all`
 * does the same for a read round's received SRTP packets (the runtime's `receive_all`).
 *
 * The GIL stays held: a call takes 1-2 us, less than handing the GIL to another thread and back.
 * So no two calls ever run at once, and one buffer serves every processor: its few cache lines stay
 * warm, and an SRTP leg's three processors no longer carry 1.5 KB each.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <string.h>

#define BUFFER_SIZE 1500
#define STATUS_BAD_PARAM 2 /* srtp_err_status_bad_param */

typedef int (*srtp_function)(void *session, void *packet, int *length);

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    srtp_function function;
    void *session;
    Py_ssize_t max_packet;
    PyObject *owner;  /* keeps the session, which frees libsrtp's context, alive */
    PyObject *refuse; /* status -> the exception to raise */
} Processor;

/* libsrtp's workspace for every processor: safe because the GIL is held from the copy in to the
 * copy out (libsrtp does not call back into Python). */
static char buffer[BUFFER_SIZE];

static PyObject *
refused(Processor *self, int status)
{
    PyObject *exception = PyObject_CallFunction(self->refuse, "i", status);
    if (exception != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exception), exception);
        Py_DECREF(exception);
    }
    return NULL;
}

/* libsrtp on a copy of `data`: new bytes, or NULL with *status set to libsrtp's refusal (no Python
 * exception), or NULL with *status 0 and a Python exception (no memory). */
static PyObject *
run(Processor *self, const char *data, Py_ssize_t size, int *status)
{
    if (size > self->max_packet) {
        *status = STATUS_BAD_PARAM;
        return NULL;
    }
    memcpy(buffer, data, (size_t)size);
    int length = (int)size;
    *status = self->function(self->session, buffer, &length);
    if (*status != 0)
        return NULL;
    return PyBytes_FromStringAndSize(buffer, length);
}

static PyObject *
process(Processor *self, const char *data, Py_ssize_t size)
{
    int status = 0;
    PyObject *result = run(self, data, size, &status);
    if (result == NULL && status != 0)
        return refused(self, status);
    return result;
}

static PyObject *
processor_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Processor *self = (Processor *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "a processor takes one packet");
        return NULL;
    }
    PyObject *packet = args[0];
    if (PyBytes_CheckExact(packet))
        return process(self, PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet));
    Py_buffer view;
    if (PyObject_GetBuffer(packet, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *result = process(self, view.buf, view.len);
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
processor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"function", "session", "owner", "refuse", "max_packet", NULL};
    PyObject *function, *session, *owner, *refuse;
    Py_ssize_t max_packet;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!OOn:Processor", keywords, &PyLong_Type, &function,
                                     &PyLong_Type, &session, &owner, &refuse, &max_packet))
        return NULL;
    if (!PyCallable_Check(refuse)) {
        PyErr_SetString(PyExc_TypeError, "refuse must be callable");
        return NULL;
    }
    if (max_packet < 0 || max_packet > BUFFER_SIZE) {
        PyErr_SetString(PyExc_ValueError, "max_packet must fit the buffer");
        return NULL;
    }
    void *function_address = PyLong_AsVoidPtr(function);
    void *session_address = PyLong_AsVoidPtr(session);
    if (PyErr_Occurred())
        return NULL;
    if (function_address == NULL || session_address == NULL) {
        PyErr_SetString(PyExc_ValueError, "null function or session");
        return NULL;
    }
    Processor *self = (Processor *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = processor_vectorcall;
    self->function = (srtp_function)function_address;
    self->session = session_address;
    self->max_packet = max_packet;
    Py_INCREF(owner);
    self->owner = owner;
    Py_INCREF(refuse);
    self->refuse = refuse;
    return (PyObject *)self;
}

static int
processor_traverse(Processor *self, visitproc visit, void *arg)
{
    Py_VISIT(self->owner);
    Py_VISIT(self->refuse);
    return 0;
}

static int
processor_clear(Processor *self)
{
    Py_CLEAR(self->owner);
    Py_CLEAR(self->refuse);
    return 0;
}

static void
processor_dealloc(Processor *self)
{
    PyObject_GC_UnTrack(self);
    processor_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ProcessorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bridgeline.media._srtp_call.Processor",
    .tp_doc = "Processor(function, session, owner, refuse, max_packet): one libsrtp function on one session",
    .tp_basicsize = sizeof(Processor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = processor_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Processor, vectorcall),
    .tp_traverse = (traverseproc)processor_traverse,
    .tp_clear = (inquiry)processor_clear,
    .tp_dealloc = (destructor)processor_dealloc,
};

/* protect_all(pending, out): the tick's SRTP datagrams in one call. Each item of `pending` is
 * (leg_id, packet, dest, processor); what the processor returns is appended to `out` as
 * (leg_id, protected, dest), in order. A packet the processor refuses is left out and counted (no
 * exception: the others still go): returns how many were refused. */
static PyObject *
protect_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "protect_all(pending: list, out: list)");
        return NULL;
    }
    PyObject *pending = args[0], *out = args[1];
    Py_ssize_t refused_count = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pending); i++) {
        PyObject *item = PyList_GET_ITEM(pending, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 4 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1)) ||
            Py_TYPE(PyTuple_GET_ITEM(item, 3)) != &ProcessorType) {
            PyErr_SetString(PyExc_TypeError, "each item must be (leg_id, bytes, dest, Processor)");
            return NULL;
        }
        Processor *processor = (Processor *)PyTuple_GET_ITEM(item, 3);
        PyObject *packet = PyTuple_GET_ITEM(item, 1);
        int status = STATUS_BAD_PARAM;
        PyObject *done = run(processor, PyBytes_AS_STRING(packet), PyBytes_GET_SIZE(packet), &status);
        if (done == NULL) {
            if (status == 0)
                return NULL; /* out of memory */
            refused_count++;
            continue;
        }
        PyObject *datagram = PyTuple_New(3);
        if (datagram == NULL) {
            Py_DECREF(done);
            return NULL;
        }
        PyObject *leg_id = PyTuple_GET_ITEM(item, 0), *dest = PyTuple_GET_ITEM(item, 2);
        Py_INCREF(leg_id);
        Py_INCREF(dest);
        PyTuple_SET_ITEM(datagram, 0, leg_id);
        PyTuple_SET_ITEM(datagram, 1, done);
        PyTuple_SET_ITEM(datagram, 2, dest);
        int appended = PyList_Append(out, datagram);
        Py_DECREF(datagram);
        if (appended < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(refused_count);
}

/* unprotect_all(arrived, inbound): a read round's SRTP packets in one call. `arrived` holds
 * (leg_id, kind, data, source) items; `inbound` maps the leg ids whose RTP is to be checked to
 * their unprotect processors. Returns a list as long as `arrived`: for an "rtp" item of such a leg,
 * the unprotected packet (bytes) or libsrtp's refusal status (int); None for every other item (no
 * such leg, RTCP, SRTCP multiplexed on the RTP port): the caller handles those one by one. */
static PyObject *
unprotect_all(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "unprotect_all(arrived: list, inbound: dict)");
        return NULL;
    }
    PyObject *arrived = args[0], *inbound = args[1];
    Py_ssize_t count = PyList_GET_SIZE(arrived);
    PyObject *results = PyList_New(count);
    if (results == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(arrived, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(PyExc_TypeError, "each item must be (leg_id, kind, data, source)");
            goto failed;
        }
        PyObject *result = Py_None;
        PyObject *kind = PyTuple_GET_ITEM(item, 1), *data = PyTuple_GET_ITEM(item, 2);
        Processor *processor = NULL;
        if (PyDict_GET_SIZE(inbound) && PyBytes_CheckExact(data) && PyUnicode_Check(kind) &&
            PyUnicode_CompareWithASCIIString(kind, "rtp") == 0) {
            processor = (Processor *)PyDict_GetItemWithError(inbound, PyTuple_GET_ITEM(item, 0));
            if (processor == NULL && PyErr_Occurred())
                goto failed;
        }
        const unsigned char *bytes = processor == NULL ? NULL : (unsigned char *)PyBytes_AS_STRING(data);
        Py_ssize_t size = processor == NULL ? 0 : PyBytes_GET_SIZE(data);
        /* SRTCP multiplexed on the RTP port (RFC 5761: second byte 192-223) goes the RTCP way. */
        if (processor != NULL && !(size > 1 && bytes[1] >= 192 && bytes[1] <= 223)) {
            if (Py_TYPE(processor) != &ProcessorType) {
                PyErr_SetString(PyExc_TypeError, "inbound's values must be Processors");
                goto failed;
            }
            int status = 0;
            result = run(processor, (const char *)bytes, size, &status);
            if (result == NULL) {
                if (status == 0)
                    goto failed; /* out of memory */
                result = PyLong_FromLong(status);
                if (result == NULL)
                    goto failed;
            }
        } else {
            Py_INCREF(result);
        }
        PyList_SET_ITEM(results, i, result);
    }
    return results;
failed:
    Py_DECREF(results); /* the slots not set yet are NULL, which list_dealloc skips */
    return NULL;
}

static PyMethodDef functions[] = {
    {"protect_all", (PyCFunction)(void (*)(void))protect_all, METH_FASTCALL,
     "protect_all(pending, out) -> refused: protect (leg_id, packet, dest, processor) items into out"},
    {"unprotect_all", (PyCFunction)(void (*)(void))unprotect_all, METH_FASTCALL,
     "unprotect_all(arrived, inbound) -> [bytes | status | None]: unprotect a round's SRTP packets"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = functions,
    .m_name = "bridgeline.media._srtp_call",
    .m_doc = "libsrtp's per-packet functions called from C (see media/srtp.py)",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__srtp_call(void)
{
    if (PyType_Ready(&ProcessorType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BUFFER_SIZE", BUFFER_SIZE) < 0 ||
        PyModule_AddType(m, &ProcessorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
