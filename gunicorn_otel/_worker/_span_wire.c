/* The usual ended SDK span, encoded in C: the same bytes as otlp_wire's Python path.
 *
 * ``encode_span(span)`` returns what ``otlp_wire.encode_span`` returns,
 * ``(resource, scope or None, Span message body)``, for the span most requests
 * end: an SDK span of a class ``configure``'s ``is_fast`` accepts (otlp_wire's
 * ``_is_fast``: the SDK's classes, and subclasses that override none of the
 * properties whose private fields are read) with an empty trace state, no events or links, a
 * status without a description, and attributes whose keys are str and whose
 * values are exactly str, bool, int (int64) or float.  Any other span, and
 * anything this code does not expect (a field of another type, a lone
 * surrogate, a body over 4 KiB), goes to ``configure``'s fallback, the Python
 * encoder, unchanged: so the bytes, the log lines and the official encoder's
 * part in odd cases are the Python path's.  This code never raises on its own
 * account; it does not log.
 *
 * Field numbers and wire types: opentelemetry/proto/trace/v1/trace.proto, as
 * listed in otlp_wire's docstring.  tests/test_otlp_wire.py compares every
 * span it encodes, through this module and without it, with the official
 * encoder byte for byte.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define CAPACITY 4096

typedef struct {
    unsigned char *p;
    unsigned char *end;
} writer;

/* The objects configure() hands over (strong references, for the process's life). */
static PyObject *fallback;           /* the Python encoder: fallback(span) */
static PyObject *is_fast;            /* is_fast(cls): may this span class's private fields be read? */
/* Span classes seen, and is_fast's answer for each (strong references); past
 * KNOWN_TYPES classes, is_fast is asked every time. */
#define KNOWN_TYPES 8
static PyTypeObject *known_types[KNOWN_TYPES];
static int known_fast[KNOWN_TYPES];
static int known_count;
static PyObject *empty_trace_state;  /* opentelemetry.trace.span.DEFAULT_TRACE_STATE */
static PyTypeObject *trace_state_type; /* TraceState: an exact one holding nothing is written as none */
static PyTypeObject *span_context_type; /* SpanContext: only an exact one is indexed as a tuple */
static PyTypeObject *bounded_attributes_type;
static PyTypeObject *bounded_list_type;
static PyTypeObject *status_type;
static PyObject *kinds[5];           /* SpanKind members, by their value */
static PyObject *status_codes[3];    /* StatusCode.UNSET, OK, ERROR */
static int configured;

static PyObject *s_context, *s_parent, *s_name, *s_kind, *s_start_time, *s_end_time, *s_attributes,
    *s_dict, *s_dropped, *s_events, *s_links, *s_dq, *s_status, *s_description, *s_status_code,
    *s_resource, *s_scope, *s_entries;

static int put(writer *w, const void *data, size_t n) {
    if ((size_t)(w->end - w->p) < n) return -1;
    memcpy(w->p, data, n);
    w->p += n;
    return 0;
}

static int put_byte(writer *w, unsigned char b) {
    if (w->p >= w->end) return -1;
    *w->p++ = b;
    return 0;
}

static int put_varint(writer *w, unsigned long long n) {
    while (n > 0x7F) {
        if (put_byte(w, (unsigned char)((n & 0x7F) | 0x80)) < 0) return -1;
        n >>= 7;
    }
    return put_byte(w, (unsigned char)n);
}

static size_t varint_size(unsigned long long n) {
    size_t size = 1;
    while (n > 0x7F) {
        n >>= 7;
        size++;
    }
    return size;
}

static int put_u64_be(writer *w, unsigned long long n) {
    unsigned char b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)(n & 0xFF);
        n >>= 8;
    }
    return put(w, b, 8);
}

static int put_u64_le(writer *w, unsigned long long n) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(n & 0xFF);
        n >>= 8;
    }
    return put(w, b, 8);
}

/* An exact, non-negative int below 2**64; -1 otherwise (maybe with an exception set). */
static int as_u64(PyObject *value, unsigned long long *out) {
    if (!PyLong_CheckExact(value)) return -1;
    unsigned long long n = PyLong_AsUnsignedLongLong(value);
    if (n == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = n;
    return 0;
}

/* trace_id: an int in 0 .. 2**128-1, as 16 big-endian bytes (what the Python path's two
 * ``>Q`` packs of ``trace_id >> 64`` and ``trace_id & (2**64-1)`` write). */
static int as_u128_be(PyObject *value, unsigned char out[16]) {
    if (!PyLong_CheckExact(value)) return -1;
    PyObject *shift = PyLong_FromLong(64);
    if (shift == NULL) return -1;
    PyObject *high = PyNumber_Rshift(value, shift);
    Py_DECREF(shift);
    if (high == NULL) return -1;
    unsigned long long hi = PyLong_AsUnsignedLongLong(high);  /* negative or >= 2**64: an error */
    Py_DECREF(high);
    if (hi == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    unsigned long long lo = PyLong_AsUnsignedLongLongMask(value);
    if (lo == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(hi & 0xFF);
        hi >>= 8;
        out[8 + i] = (unsigned char)(lo & 0xFF);
        lo >>= 8;
    }
    return 0;
}

/* Errors: a helper returns -1 (or NULL) and leaves any exception set;
 * ``encode_span`` decides once what it means.  A lone surrogate fails UTF-8 as
 * ``str.encode`` does, and the Python path then decides. */

/* One Span.attributes field (9): KeyValue{key=1 unless "", value=2 AnyValue}. */
static int put_attribute(writer *w, PyObject *key, PyObject *value) {
    Py_ssize_t key_size;
    const char *key_data;
    if (!PyUnicode_CheckExact(key) || (key_data = PyUnicode_AsUTF8AndSize(key, &key_size)) == NULL) return -1;
    size_t key_field = key_size ? 1 + varint_size((unsigned long long)key_size) + (size_t)key_size : 0;

    unsigned char scalar[11];  /* an AnyValue body other than a string's: at most a tag and a 10-byte varint */
    size_t scalar_size = 0;
    const char *text = NULL;
    Py_ssize_t text_size = 0;
    size_t any_size;  /* the AnyValue body's size */
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyUnicode_Type) {
        if ((text = PyUnicode_AsUTF8AndSize(value, &text_size)) == NULL) return -1;
        any_size = 1 + varint_size((unsigned long long)text_size) + (size_t)text_size;  /* string_value=1 */
    } else if (type == &PyBool_Type) {
        scalar[0] = 0x10;  /* bool_value=2 */
        scalar[1] = value == Py_True ? 1 : 0;
        scalar_size = 2;
        any_size = 2;
    } else if (type == &PyLong_Type) {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (n == -1 && PyErr_Occurred())) return -1;  /* out of int64: the Python path logs it */
        writer sw = {scalar, scalar + sizeof(scalar)};
        put_byte(&sw, 0x18);  /* int_value=3, negatives as 10-byte varints */
        if (put_varint(&sw, (unsigned long long)n) < 0) return -1;
        scalar_size = (size_t)(sw.p - scalar);
        any_size = scalar_size;
    } else if (type == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(value);
        unsigned long long bits;
        memcpy(&bits, &d, 8);
        scalar[0] = 0x21;  /* double_value=4, fixed64 */
        for (int i = 0; i < 8; i++) {
            scalar[1 + i] = (unsigned char)(bits & 0xFF);
            bits >>= 8;
        }
        scalar_size = 9;
        any_size = 9;
    } else {
        return -1;  /* sequences, bytes, mappings, None, subclasses: the Python path */
    }
    size_t body = key_field + 1 + varint_size(any_size) + any_size;
    if (put_byte(w, 0x4A) < 0 || put_varint(w, body) < 0) return -1;
    if (key_size) {
        if (put_byte(w, 0x0A) < 0 || put_varint(w, (unsigned long long)key_size) < 0) return -1;
        if (put(w, key_data, (size_t)key_size) < 0) return -1;
    }
    if (put_byte(w, 0x12) < 0 || put_varint(w, any_size) < 0) return -1;
    if (text != NULL) {
        if (put_byte(w, 0x0A) < 0 || put_varint(w, (unsigned long long)text_size) < 0) return -1;
        return put(w, text, (size_t)text_size);
    }
    return put(w, scalar, scalar_size);
}

/* 0 if ``obj`` is an exact BoundedList holding nothing and having dropped nothing. */
static int empty_bounded_list(PyObject *obj) {
    if (Py_TYPE(obj) != bounded_list_type) return -1;
    PyObject *dq = PyObject_GetAttr(obj, s_dq);
    if (dq == NULL) return -1;
    Py_ssize_t size = PyObject_Length(dq);
    Py_DECREF(dq);
    if (size != 0) return -1;
    PyObject *dropped = PyObject_GetAttr(obj, s_dropped);
    if (dropped == NULL) return -1;
    int truth = PyObject_IsTrue(dropped);
    Py_DECREF(dropped);
    if (truth != 0) return -1;
    return 0;
}

/* 0 if ``state`` is the shared empty TraceState, or an exact TraceState holding nothing
 * (a root span's: the SDK makes one per span), so that no trace_state field is written. */
static int empty_state(PyObject *state) {
    if (state == empty_trace_state) return 0;
    if (Py_TYPE(state) != trace_state_type) return -1;
    PyObject *entries = PyObject_GetAttr(state, s_entries);
    if (entries == NULL) return -1;
    int empty = PyDict_CheckExact(entries) && PyDict_GET_SIZE(entries) == 0;
    Py_DECREF(entries);
    return empty ? 0 : -1;
}

/* The span's fields after its attributes: 0 if written, -1 for the Python path. */
static int put_tail(writer *w, PyObject *span, int remote) {
    PyObject *events = PyObject_GetAttr(span, s_events);
    if (events == NULL) return -1;
    int rc = empty_bounded_list(events);
    Py_DECREF(events);
    if (rc < 0) return -1;
    PyObject *links = PyObject_GetAttr(span, s_links);
    if (links == NULL) return -1;
    rc = empty_bounded_list(links);
    Py_DECREF(links);
    if (rc < 0) return -1;

    PyObject *status = PyObject_GetAttr(span, s_status);
    if (status == NULL) return -1;
    int code = -1;
    if (Py_TYPE(status) == status_type) {
        /* Each step only if the one before succeeded: no call with an exception set. */
        PyObject *description = PyObject_GetAttr(status, s_description);
        int described = description == NULL ? -1 : PyObject_IsTrue(description);
        PyObject *status_code = described == 0 ? PyObject_GetAttr(status, s_status_code) : NULL;
        for (int i = 0; status_code != NULL && i < 3; i++) {
            if (status_code == status_codes[i]) code = i;
        }
        Py_XDECREF(description);
        Py_XDECREF(status_code);
    }
    Py_DECREF(status);
    if (code < 0) return -1;
    /* status=15: an empty message for UNSET, else code=3 */
    static const unsigned char unset[] = {0x7A, 0x00};
    unsigned char with_code[] = {0x7A, 0x02, 0x18, (unsigned char)code};
    if (code == 0 ? put(w, unset, 2) : put(w, with_code, 4)) return -1;
    /* flags=16 (fixed32): 0x100 "has is-remote", plus 0x200 when the parent is remote */
    unsigned char flags[] = {0x85, 0x01, 0x00, remote ? 0x03 : 0x01, 0x00, 0x00};
    return put(w, flags, sizeof(flags));
}

/* The Span message body into ``w``: 0, or -1 for the Python path. */
static int put_span(writer *w, PyObject *span) {
    int rc = -1;
    PyObject *context = NULL, *parent = NULL, *name = NULL, *kind = NULL, *start = NULL, *end = NULL,
             *attributes = NULL, *items = NULL, *dropped = NULL;
    unsigned char trace_id[16];
    unsigned long long span_id, parent_id = 0, start_ns = 0, end_ns = 0;
    int remote = 0;

    context = PyObject_GetAttr(span, s_context);
    if (context == NULL || Py_TYPE(context) != span_context_type || PyTuple_GET_SIZE(context) < 5) goto done;
    if (empty_state(PyTuple_GET_ITEM(context, 4)) < 0) goto done;  /* trace_state=3: the Python path */
    if (as_u128_be(PyTuple_GET_ITEM(context, 0), trace_id) < 0) goto done;
    if (as_u64(PyTuple_GET_ITEM(context, 1), &span_id) < 0) goto done;
    parent = PyObject_GetAttr(span, s_parent);
    if (parent == NULL) goto done;
    if (parent != Py_None) {
        if (Py_TYPE(parent) != span_context_type || PyTuple_GET_SIZE(parent) < 5) goto done;
        if (as_u64(PyTuple_GET_ITEM(parent, 1), &parent_id) < 0) goto done;
        remote = PyObject_IsTrue(PyTuple_GET_ITEM(parent, 2));
        if (remote < 0) goto done;
    }
    /* trace_id=1, span_id=2, parent_span_id=4 */
    if (put_byte(w, 0x0A) || put_byte(w, 16) || put(w, trace_id, 16)) goto done;
    if (put_byte(w, 0x12) || put_byte(w, 8) || put_u64_be(w, span_id)) goto done;
    if (parent != Py_None && (put_byte(w, 0x22) || put_byte(w, 8) || put_u64_be(w, parent_id))) goto done;

    /* name=5 (not for ""), kind=6 (SDK value + 1) */
    if ((name = PyObject_GetAttr(span, s_name)) == NULL || (kind = PyObject_GetAttr(span, s_kind)) == NULL) goto done;
    if (!PyUnicode_CheckExact(name)) goto done;
    int kind_value = -1;
    for (int i = 0; i < 5; i++) {
        if (kind == kinds[i]) kind_value = i;
    }
    if (kind_value < 0) goto done;
    Py_ssize_t name_size;
    const char *name_data = PyUnicode_AsUTF8AndSize(name, &name_size);
    if (name_data == NULL) goto done;
    if (name_size) {
        if (put_byte(w, 0x2A) || put_varint(w, (unsigned long long)name_size)) goto done;
        if (put(w, name_data, (size_t)name_size)) goto done;
    }
    if (put_byte(w, 0x30) || put_byte(w, (unsigned char)(kind_value + 1))) goto done;

    /* start_time_unix_nano=7, end_time_unix_nano=8 (fixed64), when set and not 0 */
    if ((start = PyObject_GetAttr(span, s_start_time)) == NULL || (end = PyObject_GetAttr(span, s_end_time)) == NULL) goto done;
    if (start != Py_None && as_u64(start, &start_ns) < 0) goto done;
    if (end != Py_None && as_u64(end, &end_ns) < 0) goto done;
    if (start_ns && (put_byte(w, 0x39) || put_u64_le(w, start_ns))) goto done;
    if (end_ns && (put_byte(w, 0x41) || put_u64_le(w, end_ns))) goto done;

    /* attributes=9, dropped_attributes_count=10 */
    attributes = PyObject_GetAttr(span, s_attributes);
    if (attributes == NULL || Py_TYPE(attributes) != bounded_attributes_type) goto done;
    items = PyObject_GetAttr(attributes, s_dict);
    if (items == NULL || !PyDict_CheckExact(items)) goto done;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(items, &pos, &key, &value)) {
        if (put_attribute(w, key, value) < 0) goto done;
    }
    dropped = PyObject_GetAttr(attributes, s_dropped);
    unsigned long long dropped_count;
    if (dropped == NULL || as_u64(dropped, &dropped_count) < 0) goto done;
    if (dropped_count && (put_byte(w, 0x50) || put_varint(w, dropped_count))) goto done;

    rc = put_tail(w, span, remote);
done:
    Py_XDECREF(context);
    Py_XDECREF(parent);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(start);
    Py_XDECREF(end);
    Py_XDECREF(attributes);
    Py_XDECREF(items);
    Py_XDECREF(dropped);
    return rc;
}

/* 1 if ``type`` is a span class is_fast accepts, 0 if not, -1 (exception set) if it failed. */
static int fast_type(PyTypeObject *type) {
    for (int i = 0; i < known_count; i++) {
        if (known_types[i] == type) return known_fast[i];
    }
    PyObject *callable = is_fast;
    Py_INCREF(callable);  /* a configure() during the call must not free it */
    PyObject *answer = PyObject_CallOneArg(callable, (PyObject *)type);
    Py_DECREF(callable);
    int fast = answer == NULL ? -1 : PyObject_IsTrue(answer);
    Py_XDECREF(answer);
    if (fast < 0) return -1;
    if (known_count < KNOWN_TYPES) {
        Py_INCREF(type);
        known_types[known_count] = type;
        known_fast[known_count] = fast;
        known_count++;
    }
    return fast;
}

/* (resource, scope or None, body) written here; NULL: the fallback's turn, or an error to raise. */
static PyObject *written(PyObject *span) {
    int fast = fast_type(Py_TYPE(span));
    if (fast != 1) return NULL;
    unsigned char buffer[CAPACITY];
    writer w = {buffer, buffer + CAPACITY};
    if (put_span(&w, span) < 0) return NULL;
    PyObject *result = NULL;
    PyObject *resource = PyObject_GetAttr(span, s_resource);
    PyObject *scope = resource == NULL ? NULL : PyObject_GetAttr(span, s_scope);
    int truth = scope == NULL ? -1 : (scope == Py_None ? 0 : PyObject_IsTrue(scope));
    if (truth >= 0) {
        PyObject *body = PyBytes_FromStringAndSize((const char *)buffer, w.p - buffer);
        if (body != NULL) result = PyTuple_Pack(3, resource, truth ? scope : Py_None, body);
        Py_XDECREF(body);
    }
    Py_XDECREF(resource);
    Py_XDECREF(scope);
    return result;
}

static PyObject *encode_span(PyObject *module, PyObject *span) {
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_span_wire.configure() was not called");
        return NULL;
    }
    PyObject *result = written(span);
    if (result != NULL) return result;
    if (PyErr_Occurred()) {
        /* What the Python path's ``except Exception`` would catch goes to it (which
         * meets the same error and decides); KeyboardInterrupt, SystemExit and the
         * like propagate, as they would through the Python path. */
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
        PyErr_Clear();
    }
    PyObject *callable = fallback;
    Py_INCREF(callable);  /* a configure() during the call must not free it */
    result = PyObject_CallOneArg(callable, span);
    Py_DECREF(callable);
    return result;
}

static int store(PyObject **slot, PyObject *value) {
    Py_INCREF(value);
    Py_XSETREF(*slot, value);
    return 0;
}

static PyObject *configure(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"fallback", "is_fast", "span_context", "empty_trace_state", "bounded_attributes",
                            "bounded_list", "status", "kinds", "status_codes", NULL};
    PyObject *fallback_, *is_fast_, *context_type, *empty, *attributes_type, *list_type, *status_type_, *kinds_, *codes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!OO!O!O!O!O!:configure", names, &fallback_, &is_fast_,
                                     &PyType_Type, &context_type, &empty, &PyType_Type, &attributes_type, &PyType_Type,
                                     &list_type, &PyType_Type, &status_type_, &PyTuple_Type, &kinds_, &PyTuple_Type,
                                     &codes))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)context_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "configure: span_context must be a tuple subclass");
        return NULL;
    }
    if (PyTuple_GET_SIZE(kinds_) != 5 || PyTuple_GET_SIZE(codes) != 3) {
        PyErr_SetString(PyExc_ValueError, "configure: 5 kinds and 3 status codes");
        return NULL;
    }
    store(&fallback, fallback_);
    store(&is_fast, is_fast_);
    store((PyObject **)&span_context_type, context_type);
    for (int i = 0; i < known_count; i++) Py_CLEAR(known_types[i]);
    known_count = 0;
    store(&empty_trace_state, empty);
    store((PyObject **)&trace_state_type, (PyObject *)Py_TYPE(empty));
    store((PyObject **)&bounded_attributes_type, attributes_type);
    store((PyObject **)&bounded_list_type, list_type);
    store((PyObject **)&status_type, status_type_);
    for (int i = 0; i < 5; i++) store(&kinds[i], PyTuple_GET_ITEM(kinds_, i));
    for (int i = 0; i < 3; i++) store(&status_codes[i], PyTuple_GET_ITEM(codes, i));
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode_span", (PyCFunction)encode_span, METH_O,
     "encode_span(span) -> (resource, scope or None, Span message body), as otlp_wire.encode_span."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(fallback, is_fast, span_context, empty_trace_state, bounded_attributes, bounded_list, status, kinds, "
     "status_codes): what encode_span compares a span's fields with, and where it sends any other span."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_span_wire", NULL, -1, methods};

#define INTERN(var, text)                                  \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;

PyMODINIT_FUNC PyInit__span_wire(void) {
    INTERN(s_context, "_context");
    INTERN(s_parent, "_parent");
    INTERN(s_name, "_name");
    INTERN(s_kind, "_kind");
    INTERN(s_start_time, "_start_time");
    INTERN(s_end_time, "_end_time");
    INTERN(s_attributes, "_attributes");
    INTERN(s_dict, "_dict");
    INTERN(s_dropped, "dropped");
    INTERN(s_events, "_events");
    INTERN(s_links, "_links");
    INTERN(s_dq, "_dq");
    INTERN(s_status, "_status");
    INTERN(s_description, "_description");
    INTERN(s_status_code, "_status_code");
    INTERN(s_resource, "_resource");
    INTERN(s_scope, "_instrumentation_scope");
    INTERN(s_entries, "_dict");
    return PyModule_Create(&module_def);
}
