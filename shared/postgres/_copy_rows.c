/*
 * A batch's rows in PostgreSQL's binary COPY format, built in one call from its columns.
 *
 * psycopg's write_row formats one row per Python call, through a dumper object per value (the
 * uuid's a Python one); for a batch of ten thousand short records that is most of the persister's
 * COPY cost. This builds the same bytes (tests/unit/test_binary_copy.py compares them with
 * psycopg's) for the column types the sequence tables use, and nothing else.
 *
 * rows(upload_id, columns, kinds) -> bytes: the tuples only (no signature, no trailer), each the
 * 16-byte upload_id followed by one value of each column. ``kinds`` has one letter per column:
 *   q  int8      a Python int
 *   i  int4      a Python int
 *   t  text      a str, as UTF-8
 *   a  bytea     an ASCII str or bytes, as they are (residues, qualities)
 *   j  jsonb     bytes already in jsonb's binary form (version byte, then the JSON text)
 * None is NULL in every kind. A value of another type, an int out of range, a str that is not
 * ASCII in an ``a`` column or columns of unequal length raise, and nothing is returned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static inline void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline void put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* The bytes of one value (NULL data and -1 for a NULL); raises and returns -2 on a bad value. */
static Py_ssize_t value_of(PyObject *v, char kind, const char **data, unsigned char *scratch)
{
    if (v == Py_None) {
        *data = NULL;
        return -1;
    }
    switch (kind) {
    case 'q':
    case 'i': {
        int overflow = 0;
        long long n;
        if (!PyLong_Check(v)) {
            PyErr_Format(PyExc_TypeError, "an integer column holds a %.80s", Py_TYPE(v)->tp_name);
            return -2;
        }
        n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (n == -1 && PyErr_Occurred())
            return -2;
        if (overflow || (kind == 'i' && (n < INT32_MIN || n > INT32_MAX))) {
            PyErr_SetString(PyExc_OverflowError, kind == 'i' ? "int out of int4 range" : "int out of int8 range");
            return -2;
        }
        if (kind == 'i') {
            put_be32(scratch, (uint32_t)(int32_t)n);
            *data = (const char *)scratch;
            return 4;
        }
        put_be64(scratch, (uint64_t)n);
        *data = (const char *)scratch;
        return 8;
    }
    case 't': {
        Py_ssize_t n;
        if (!PyUnicode_Check(v)) {
            PyErr_Format(PyExc_TypeError, "a text column holds a %.80s", Py_TYPE(v)->tp_name);
            return -2;
        }
        *data = PyUnicode_AsUTF8AndSize(v, &n);
        return *data == NULL ? -2 : n;
    }
    case 'a':
        if (PyUnicode_Check(v)) {
            if (!PyUnicode_IS_ASCII(v)) {
                PyErr_SetString(PyExc_ValueError, "residues or qualities that are not ASCII");
                return -2;
            }
            *data = (const char *)PyUnicode_DATA(v);
            return PyUnicode_GET_LENGTH(v);
        }
        /* fall through: bytes */
    case 'j':
        if (!PyBytes_Check(v)) {
            PyErr_Format(PyExc_TypeError, "a bytea or jsonb column holds a %.80s", Py_TYPE(v)->tp_name);
            return -2;
        }
        *data = PyBytes_AS_STRING(v);
        return PyBytes_GET_SIZE(v);
    default:
        PyErr_Format(PyExc_ValueError, "unknown column kind %c", kind);
        return -2;
    }
}

static PyObject *rows(PyObject *self, PyObject *args)
{
    Py_buffer uid;
    PyObject *columns, *out = NULL;
    const char *kinds;
    Py_ssize_t nkinds, ncols, nrows = 0, total = 0;
    unsigned char scratch[8];

    if (!PyArg_ParseTuple(args, "y*O!s#", &uid, &PyList_Type, &columns, &kinds, &nkinds))
        return NULL;
    ncols = PyList_GET_SIZE(columns);
    if (uid.len != 16 || ncols != nkinds || ncols + 1 > INT16_MAX) {
        PyErr_SetString(PyExc_ValueError, "a 16-byte uuid and one kind per column are needed");
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *col = PyList_GET_ITEM(columns, c);
        if (!PyList_Check(col)) {
            PyErr_SetString(PyExc_TypeError, "each column must be a list");
            goto done;
        }
        if (c == 0)
            nrows = PyList_GET_SIZE(col);
        else if (PyList_GET_SIZE(col) != nrows) {
            PyErr_SetString(PyExc_ValueError, "columns of unequal length");
            goto done;
        }
    }
    /* First pass: the size, checking every value; second pass: the bytes. */
    total = nrows * (2 + 4 + 16 + 4 * ncols);
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *col = PyList_GET_ITEM(columns, c);
        for (Py_ssize_t r = 0; r < nrows; r++) {
            const char *data;
            Py_ssize_t n = value_of(PyList_GET_ITEM(col, r), kinds[c], &data, scratch);
            if (n == -2)
                goto done;
            if (n > INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "a value longer than COPY allows");
                goto done;
            }
            if (n > 0)
                total += n;
        }
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        goto done;
    {
        unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
        const unsigned char *end = p + total;
        /* No Python code runs between the passes (the GIL is held, and converting a str, bytes
           or int runs none), so the sizes cannot change; every write is still checked against
           the end, so that a mistake here raises instead of writing past the buffer. */
        for (Py_ssize_t r = 0; r < nrows; r++) {
            if (end - p < 22)
                goto changed;
            p[0] = (unsigned char)((ncols + 1) >> 8);
            p[1] = (unsigned char)(ncols + 1);
            put_be32(p + 2, 16);
            memcpy(p + 6, uid.buf, 16);
            p += 22;
            for (Py_ssize_t c = 0; c < ncols; c++) {
                const char *data;
                Py_ssize_t n = value_of(PyList_GET_ITEM(PyList_GET_ITEM(columns, c), r), kinds[c], &data, scratch);
                if (n == -2) {
                    Py_CLEAR(out);
                    goto done;
                }
                if (end - p < 4 + (n > 0 ? n : 0))
                    goto changed;
                put_be32(p, (uint32_t)(n < 0 ? -1 : (int32_t)n));
                p += 4;
                if (n > 0) {
                    memcpy(p, data, (size_t)n);
                    p += n;
                }
            }
        }
        if (p == end)
            goto done;
    }
changed:
    PyErr_SetString(PyExc_RuntimeError, "the columns changed while they were encoded");
    Py_CLEAR(out);
done:
    PyBuffer_Release(&uid);
    return out;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, "A batch's rows in binary COPY format: rows(upload_id, columns, kinds) -> bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_copy_rows", NULL, -1, methods};

PyMODINIT_FUNC PyInit__copy_rows(void)
{
    return PyModule_Create(&module);
}
