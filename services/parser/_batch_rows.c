/*
 * The batcher's hot path in C: short whole records (``WholeRecord`` events) into batch rows.
 *
 * For a file of short records (reads, a CSV row per record) the parser spent ~3.5-4.6 us a record
 * in ``Batcher._whole`` -- the row, its share of the batch's bytes, its pair digest -- more than
 * the engine that parsed it. This does the same for a run of such events in one call, and stops
 * at the first event it does not take, for the Python code to handle: any other kind of event, a
 * record as long as a part (cut into parts), and anything not of the exact types the engine
 * produces. It takes an event only once everything it needs is checked, so what it leaves has no
 * effect yet. tests/unit/test_batching.py runs the same events through both paths and compares
 * the batches.
 *
 * take_whole(events, start, whole_type, record_type, part_bytes, overhead, bytes_now, batch_bytes,
 *            max_records, rows, pair_native, pair_fallback) -> (next, bytes_now, full)
 *
 * Appends one ``record_type`` row to ``rows`` per event taken, from ``events[start]`` on, adding
 * each record's bytes (as ``Batcher._whole`` counts them) to ``bytes_now``; stops after the event
 * that fills the batch (``full``: ``bytes_now >= batch_bytes`` or ``len(rows) >= max_records``),
 * at the first event it does not take, or at the end. ``pair_native(name, length)`` gives the pair
 * digest or None, then ``pair_fallback(name, length)`` is asked (``shared/domain/seqcol.py``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* WholeRecord's fields, and the number of Record's (shared/parsing/records.py, shared/domain/record_schema.py). */
enum { W_ORDINAL, W_LINE, W_GENE_NAME, W_SEQ_ID, W_DESCRIPTION, W_DATA, W_MD5, W_REFGET, W_QUALITY, W_ATTRIBUTES, W_FIELDS };
#define RECORD_FIELDS 13

/* batching.json_bytes_bound: ASCII doubles at worst, any other character takes at most four bytes. */
static inline Py_ssize_t json_bound(PyObject *text)
{
    return PyUnicode_GET_LENGTH(text) * (PyUnicode_IS_ASCII(text) ? 2 : 4);
}

/* batching.metadata_bytes (``overhead``: its RECORD_OVERHEAD_BYTES), or -1 where the types are not
 * the engine's (left to the Python code). */
static Py_ssize_t metadata_bytes(PyObject *gene_name, PyObject *attributes, Py_ssize_t overhead)
{
    Py_ssize_t size = 2 * json_bound(gene_name) + overhead;
    if (attributes == Py_None)
        return size;
    if (!PyDict_CheckExact(attributes))
        return -1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attributes, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !PyUnicode_CheckExact(value))
            return -1;
        size += json_bound(key) + json_bound(value) + 6;
    }
    return size;
}

static PyObject *pair_digest(PyObject *pair_native, PyObject *pair_fallback, PyObject *name, PyObject *length)
{
    if (pair_native != Py_None) {
        PyObject *digest = PyObject_CallFunctionObjArgs(pair_native, name, length, NULL);
        if (digest == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return NULL;
            PyErr_Clear();
        } else if (digest != Py_None) {
            return digest;
        } else {
            Py_DECREF(digest);
        }
    }
    return PyObject_CallFunctionObjArgs(pair_fallback, name, length, NULL);
}

/* One row, or NULL with an exception set. */
static PyObject *row_of(PyTypeObject *record_type, PyObject *ev, PyObject *data, PyObject *quality,
                        PyObject *pair_native, PyObject *pair_fallback)
{
    PyObject *length = PyLong_FromSsize_t(PyBytes_GET_SIZE(data));
    PyObject *residues = PyUnicode_DecodeASCII(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), "strict");
    PyObject *qual = quality == Py_None
                         ? Py_NewRef(Py_None)
                         : PyUnicode_DecodeASCII(PyBytes_AS_STRING(quality), PyBytes_GET_SIZE(quality), "strict");
    PyObject *pair = NULL, *row = NULL;
    if (length == NULL || residues == NULL || qual == NULL)
        goto fail;
    pair = pair_digest(pair_native, pair_fallback, PyTuple_GET_ITEM(ev, W_SEQ_ID), length);
    if (pair == NULL)
        goto fail;
    /* As tuple.__new__(record_type, values) builds it: allocated for its items, then filled. */
    row = record_type->tp_alloc(record_type, RECORD_FIELDS);
    if (row == NULL)
        goto fail;
    PyObject *values[RECORD_FIELDS] = {
        PyTuple_GET_ITEM(ev, W_ORDINAL),
        PyTuple_GET_ITEM(ev, W_LINE),
        PyTuple_GET_ITEM(ev, W_GENE_NAME),
        PyTuple_GET_ITEM(ev, W_SEQ_ID),
        PyTuple_GET_ITEM(ev, W_DESCRIPTION),
        length,
        NULL, /* part_count: 0, inline */
        PyTuple_GET_ITEM(ev, W_MD5),
        PyTuple_GET_ITEM(ev, W_REFGET),
        PyTuple_GET_ITEM(ev, W_ATTRIBUTES),
        residues,
        qual,
        pair,
    };
    for (int i = 0; i < RECORD_FIELDS; i++) {
        if (i == 6) {
            PyObject *zero = PyLong_FromLong(0);
            if (zero == NULL)
                goto fail;
            PyTuple_SET_ITEM(row, i, zero);
        } else {
            PyTuple_SET_ITEM(row, i, Py_NewRef(values[i]));
        }
    }
    Py_DECREF(length);
    Py_DECREF(residues);
    Py_DECREF(qual);
    Py_DECREF(pair);
    return row;
fail:
    Py_XDECREF(row);
    Py_XDECREF(length);
    Py_XDECREF(residues);
    Py_XDECREF(qual);
    Py_XDECREF(pair);
    return NULL;
}

static PyObject *take_whole(PyObject *self, PyObject *args)
{
    PyObject *events, *whole_type, *record_obj, *rows, *pair_native, *pair_fallback;
    Py_ssize_t start, part_bytes, overhead, bytes_now, batch_bytes, max_records;
    if (!PyArg_ParseTuple(args, "O!nOOnnnnnO!OO", &PyList_Type, &events, &start, &whole_type, &record_obj,
                          &part_bytes, &overhead, &bytes_now, &batch_bytes, &max_records, &PyList_Type, &rows,
                          &pair_native, &pair_fallback))
        return NULL;
    if (!PyType_Check(whole_type) || !PyType_Check(record_obj) ||
        !PyType_IsSubtype((PyTypeObject *)whole_type, &PyTuple_Type) ||
        !PyType_IsSubtype((PyTypeObject *)record_obj, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "whole_type and record_type must be tuple types");
        return NULL;
    }
    PyTypeObject *record_type = (PyTypeObject *)record_obj;
    int full = 0;
    Py_ssize_t i = start < 0 ? 0 : start;
    /* The size is read again each time: pair_fallback is Python code. */
    for (; i < PyList_GET_SIZE(events); i++) {
        PyObject *ev = PyList_GET_ITEM(events, i);
        if ((PyObject *)Py_TYPE(ev) != whole_type || PyTuple_GET_SIZE(ev) != W_FIELDS)
            break;
        PyObject *data = PyTuple_GET_ITEM(ev, W_DATA);
        PyObject *quality = PyTuple_GET_ITEM(ev, W_QUALITY);
        PyObject *gene_name = PyTuple_GET_ITEM(ev, W_GENE_NAME);
        if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) >= part_bytes || !PyUnicode_CheckExact(gene_name) ||
            (quality != Py_None && !PyBytes_CheckExact(quality)))
            break;
        Py_ssize_t meta = metadata_bytes(gene_name, PyTuple_GET_ITEM(ev, W_ATTRIBUTES), overhead);
        if (meta < 0)
            break;
        /* Counted before pair_fallback (Python code) runs: once ``ev`` is released, ``data`` and
           ``quality`` may be gone with it. */
        Py_ssize_t size = PyBytes_GET_SIZE(data) + (quality == Py_None ? 0 : PyBytes_GET_SIZE(quality)) + meta;
        Py_INCREF(ev);
        PyObject *row = row_of(record_type, ev, data, quality, pair_native, pair_fallback);
        Py_DECREF(ev);
        if (row == NULL)
            return NULL;
        int appended = PyList_Append(rows, row);
        Py_DECREF(row);
        if (appended < 0)
            return NULL;
        bytes_now += size;
        if (bytes_now >= batch_bytes || PyList_GET_SIZE(rows) >= max_records) {
            full = 1;
            i++;
            break;
        }
    }
    return Py_BuildValue("nnO", i, bytes_now, full ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"take_whole", take_whole, METH_VARARGS,
     "Short whole records into batch rows, until the batch is full or an event is left to Python."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_batch_rows", NULL, -1, methods};

PyMODINIT_FUNC PyInit__batch_rows(void)
{
    return PyModule_Create(&module);
}
