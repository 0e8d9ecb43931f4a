/* Rows of a SQLite query as PostgreSQL binary COPY data: the reading half of a catalog move.
 *
 * Reader(path).batch(sql, params, kinds, time_hook, number_hook) steps the query without the GIL and writes
 * each row as a COPY tuple, one field per result column, as ``kinds`` says (one letter a column):
 *   u uuid (32 hex digits, dashes allowed)   t text   i int4   I int8   b bool   d float8
 *   T timestamp ('YYYY-MM-DD HH:MM:SS[.ffffff]'; any other text goes through time_hook, which returns
 *     microseconds since 2000-01-01 or raises)
 *   j jsonb (text; a number SQLite's NUMERIC affinity stored as a number goes through number_hook -> str)
 * It returns (rows, last key, COPY data with header and trailer, canonical data, documents). The canonical
 * data is the same stream without the jsonb fields: exactly what PostgreSQL's COPY (SELECT <other columns>)
 * TO STDOUT (FORMAT binary) prints of the copied rows, so both sides can digest it. It is None when there is
 * no jsonb field (the COPY data is then canonical as it is). The documents are the key and jsonb texts of each
 * row with a jsonb field that is not NULL (see keep_documents), for PostgreSQL to digest.
 * A value that does not fit its kind raises BadValue(column index, what it should be, the value).
 *
 * SQLite's functions come from the library Python's own sqlite3 module loaded (load_sqlite), so neither
 * SQLite's headers nor a library to link against are needed to build this module.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
#define SQLITE_OK 0
#define SQLITE_ROW 100
#define SQLITE_DONE 101
#define SQLITE_INTEGER 1
#define SQLITE_FLOAT 2
#define SQLITE_TEXT 3
#define SQLITE_NULL 5
#define SQLITE_OPEN_READWRITE 0x00000002
#define SQLITE_OPEN_NOMUTEX 0x00008000
#define SQLITE_TRANSIENT ((void (*)(void *))-1)

static struct {
    int (*open_v2)(const char *, sqlite3 **, int, const char *);
    int (*close_v2)(sqlite3 *);
    const char *(*errmsg)(sqlite3 *);
    int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **, const char **);
    int (*bind_int64)(sqlite3_stmt *, int, long long);
    int (*bind_double)(sqlite3_stmt *, int, double);
    int (*bind_text)(sqlite3_stmt *, int, const char *, int, void (*)(void *));
    int (*bind_null)(sqlite3_stmt *, int);
    int (*step)(sqlite3_stmt *);
    int (*column_count)(sqlite3_stmt *);
    int (*column_type)(sqlite3_stmt *, int);
    long long (*column_int64)(sqlite3_stmt *, int);
    double (*column_double)(sqlite3_stmt *, int);
    const unsigned char *(*column_text)(sqlite3_stmt *, int);
    int (*column_bytes)(sqlite3_stmt *, int);
    int (*finalize)(sqlite3_stmt *);
} api;

static int api_loaded = 0;
static PyObject *BadValue;

static PyObject *load_sqlite(PyObject *module, PyObject *path) {
    /* Take SQLite's functions from the shared object at ``path`` or, through dlsym, from its dependencies. */
    if (api_loaded) Py_RETURN_TRUE;
    const char *name = PyUnicode_AsUTF8(path);
    if (!name) return NULL;
    void *library = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!library) Py_RETURN_FALSE;
    struct { void **slot; const char *symbol; } wanted[] = {
        {(void **)&api.open_v2, "sqlite3_open_v2"},       {(void **)&api.close_v2, "sqlite3_close_v2"},
        {(void **)&api.errmsg, "sqlite3_errmsg"},         {(void **)&api.prepare_v2, "sqlite3_prepare_v2"},
        {(void **)&api.bind_int64, "sqlite3_bind_int64"}, {(void **)&api.bind_double, "sqlite3_bind_double"},
        {(void **)&api.bind_text, "sqlite3_bind_text"},   {(void **)&api.bind_null, "sqlite3_bind_null"},
        {(void **)&api.step, "sqlite3_step"},             {(void **)&api.column_count, "sqlite3_column_count"},
        {(void **)&api.column_type, "sqlite3_column_type"},
        {(void **)&api.column_int64, "sqlite3_column_int64"},
        {(void **)&api.column_double, "sqlite3_column_double"},
        {(void **)&api.column_text, "sqlite3_column_text"},
        {(void **)&api.column_bytes, "sqlite3_column_bytes"}, {(void **)&api.finalize, "sqlite3_finalize"},
    };
    for (size_t n = 0; n < sizeof wanted / sizeof wanted[0]; n++) {
        *wanted[n].slot = dlsym(library, wanted[n].symbol);
        if (!*wanted[n].slot) {
            dlclose(library);
            Py_RETURN_FALSE;
        }
    }
    api_loaded = 1; /* the library stays loaded for the life of the process */
    Py_RETURN_TRUE;
}

/* A growing byte buffer, used without the GIL. */
typedef struct {
    char *data;
    size_t size, capacity;
} Buffer;

static int reserve(Buffer *b, size_t more) {
    if (b->size + more <= b->capacity) return 0;
    size_t capacity = b->capacity ? b->capacity : 1 << 20;
    while (capacity < b->size + more) capacity *= 2;
    char *data = realloc(b->data, capacity);
    if (!data) return -1;
    b->data = data, b->capacity = capacity;
    return 0;
}

static void put(Buffer *b, const void *bytes, size_t n) { /* after reserve */
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

static void put_u16(Buffer *b, uint16_t v) {
    unsigned char s[2] = {v >> 8, v};
    put(b, s, 2);
}

static void put_u32(Buffer *b, uint32_t v) {
    unsigned char s[4] = {v >> 24, v >> 16, v >> 8, v};
    put(b, s, 4);
}

static void put_u64(Buffer *b, uint64_t v) {
    put_u32(b, (uint32_t)(v >> 32));
    put_u32(b, (uint32_t)v);
}

static const char SIGNATURE[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0"; /* signature, flags, extension length */
#define SIGNATURE_SIZE 19

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int parse_uuid(const unsigned char *text, int n, unsigned char out[16]) {
    int digits = 0;
    for (int i = 0; i < n; i++) {
        if (text[i] == '-') continue;
        int v = hex_digit(text[i]);
        if (v < 0 || digits == 32) return -1;
        if (digits % 2) out[digits / 2] |= v;
        else out[digits / 2] = v << 4;
        digits++;
    }
    return digits == 32 ? 0 : -1;
}

static int number(const unsigned char *text, int digits, int *value) {
    *value = 0;
    for (int i = 0; i < digits; i++) {
        if (text[i] < '0' || text[i] > '9') return -1;
        *value = *value * 10 + (text[i] - '0');
    }
    return 0;
}

static int64_t days_from_civil(int y, int m, int d) { /* days since 1970-01-01, proleptic Gregorian */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* 'YYYY-MM-DD HH:MM:SS' with an optional '.ffffff', as microseconds since 2000-01-01; -1: another form. */
static int parse_time(const unsigned char *t, int n, int64_t *micros) {
    int y, mo, d, h, mi, s, f = 0;
    if (!(n == 19 || n == 26) || t[4] != '-' || t[7] != '-' || t[10] != ' ' || t[13] != ':' || t[16] != ':')
        return -1;
    if (number(t, 4, &y) || number(t + 5, 2, &mo) || number(t + 8, 2, &d) || number(t + 11, 2, &h) ||
        number(t + 14, 2, &mi) || number(t + 17, 2, &s))
        return -1;
    if (n == 26 && (t[19] != '.' || number(t + 20, 6, &f))) return -1;
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] || (mo == 2 && d == 29 && !leap) ||
        h > 23 || mi > 59 || s > 59)
        return -1;
    int64_t days = days_from_civil(y, mo, d) - 10957; /* 10957: days from 1970-01-01 to 2000-01-01 */
    *micros = ((days * 24 + h) * 60 + mi) * 60 * INT64_C(1000000) + s * INT64_C(1000000) + f;
    return 0;
}

typedef struct {
    PyObject_HEAD sqlite3 *db;
    Buffer out, canonical, docs, key; /* kept from batch to batch: allocating them anew costs page faults */
    int busy;                         /* a batch is being read (by another thread) */
} Reader;

static void release(Reader *self) {
    if (self->db) api.close_v2(self->db);
    self->db = NULL;
    Buffer *buffers[] = {&self->out, &self->canonical, &self->docs, &self->key};
    for (size_t n = 0; n < sizeof buffers / sizeof buffers[0]; n++) {
        free(buffers[n]->data);
        *buffers[n] = (Buffer){0};
    }
}

static int Reader_init(Reader *self, PyObject *args, PyObject *kwargs) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return -1;
    if (!api_loaded) {
        PyErr_SetString(PyExc_RuntimeError, "SQLite is not loaded: call load_sqlite first");
        return -1;
    }
    int rc;
    /* No mutex: a reader is used by one thread at a time (``busy`` refuses a second). */
    Py_BEGIN_ALLOW_THREADS
    rc = api.open_v2(path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    Py_END_ALLOW_THREADS
    if (rc != SQLITE_OK) {
        PyErr_Format(PyExc_OSError, "cannot open %s: %s", path, self->db ? api.errmsg(self->db) : "out of memory");
        api.close_v2(self->db);
        self->db = NULL;
        return -1;
    }
    return 0;
}

static void Reader_dealloc(Reader *self) {
    release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Reader_close(Reader *self, PyObject *unused) {
    if (self->busy) return PyErr_SetString(PyExc_RuntimeError, "the reader is reading a batch"), NULL;
    release(self);
    Py_RETURN_NONE;
}

static int bind(sqlite3_stmt *statement, PyObject *params) {
    Py_ssize_t count = PySequence_Fast_GET_SIZE(params);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PySequence_Fast_GET_ITEM(params, i);
        int rc, slot = (int)i + 1;
        if (value == Py_None) rc = api.bind_null(statement, slot);
        else if (PyLong_Check(value)) {
            long long v = PyLong_AsLongLong(value);
            if (v == -1 && PyErr_Occurred()) return -1;
            rc = api.bind_int64(statement, slot, v);
        } else if (PyFloat_Check(value)) rc = api.bind_double(statement, slot, PyFloat_AS_DOUBLE(value));
        else if (PyUnicode_Check(value)) {
            Py_ssize_t n;
            const char *text = PyUnicode_AsUTF8AndSize(value, &n);
            if (!text) return -1;
            rc = api.bind_text(statement, slot, text, (int)n, SQLITE_TRANSIENT);
        } else {
            PyErr_Format(PyExc_TypeError, "cannot bind a %s", Py_TYPE(value)->tp_name);
            return -1;
        }
        if (rc != SQLITE_OK) {
            PyErr_Format(PyExc_ValueError, "cannot bind parameter %d", slot);
            return -1;
        }
    }
    return 0;
}

/* The value of a result column as a Python object (for errors and hooks). */
static PyObject *column_object(sqlite3_stmt *statement, int column) {
    switch (api.column_type(statement, column)) {
    case SQLITE_INTEGER:
        return PyLong_FromLongLong(api.column_int64(statement, column));
    case SQLITE_FLOAT:
        return PyFloat_FromDouble(api.column_double(statement, column));
    case SQLITE_NULL:
        Py_RETURN_NONE;
    default: {
        const unsigned char *text = api.column_text(statement, column);
        return PyUnicode_DecodeUTF8((const char *)text, api.column_bytes(statement, column), "replace");
    }
    }
}

typedef struct {
    int column;
    const char *expected;
} Problem;

enum { WRITTEN, BAD_VALUE, NO_MEMORY, PYTHON_ERROR };

/* Call a hook on column ``c`` of the current row, taking the GIL for it; on PYTHON_ERROR the GIL stays held. */
static PyObject *call_hook(PyObject *hook, sqlite3_stmt *st, int c, PyThreadState **thread) {
    PyEval_RestoreThread(*thread);
    PyObject *value = column_object(st, c);
    PyObject *found = value ? PyObject_CallOneArg(hook, value) : NULL;
    Py_XDECREF(value);
    return found;
}

/* After a hook failed: a ValueError means the value is not what the column holds (the GIL is given back);
 * any other exception is passed on, the GIL held. */
static int hook_failed(PyThreadState **thread, Problem *problem, const char *expected) {
    if (!PyErr_ExceptionMatches(PyExc_ValueError)) return PYTHON_ERROR;
    PyErr_Clear();
    *thread = PyEval_SaveThread();
    problem->expected = expected;
    return BAD_VALUE;
}

/* Write column ``c`` of the current row as one COPY field. Runs without the GIL, taking it only to call a
 * hook. */
static int write_field(sqlite3_stmt *st, int c, char kind, Buffer *out, PyObject *time_hook,
                       PyObject *number_hook, PyThreadState **thread, Problem *problem) {
    int type = api.column_type(st, c);
    if (reserve(out, 64)) return NO_MEMORY;
    if (type == SQLITE_NULL) {
        put_u32(out, 0xFFFFFFFFu);
        return WRITTEN;
    }
    problem->column = c;
    switch (kind) {
    case 't': {
        const unsigned char *text = api.column_text(st, c);
        int n = api.column_bytes(st, c);
        if (reserve(out, 4 + (size_t)n)) return NO_MEMORY;
        put_u32(out, (uint32_t)n);
        put(out, text, n);
        return WRITTEN;
    }
    case 'u': {
        unsigned char id[16];
        if (type != SQLITE_TEXT || parse_uuid(api.column_text(st, c), api.column_bytes(st, c), id))
            return problem->expected = "a UUID", BAD_VALUE;
        put_u32(out, 16);
        put(out, id, 16);
        return WRITTEN;
    }
    case 'i':
    case 'I': {
        if (type != SQLITE_INTEGER) return problem->expected = "an integer", BAD_VALUE;
        long long v = api.column_int64(st, c);
        if (kind == 'I') {
            put_u32(out, 8);
            put_u64(out, (uint64_t)v);
        } else {
            if (v < INT32_MIN || v > INT32_MAX) return problem->expected = "a 32-bit integer", BAD_VALUE;
            put_u32(out, 4);
            put_u32(out, (uint32_t)(int32_t)v);
        }
        return WRITTEN;
    }
    case 'b': {
        if (type != SQLITE_INTEGER) return problem->expected = "a boolean", BAD_VALUE;
        unsigned char v = api.column_int64(st, c) != 0;
        put_u32(out, 1);
        put(out, &v, 1);
        return WRITTEN;
    }
    case 'd': {
        if (type != SQLITE_INTEGER && type != SQLITE_FLOAT) return problem->expected = "a number", BAD_VALUE;
        double v = api.column_double(st, c);
        uint64_t bits;
        memcpy(&bits, &v, 8);
        put_u32(out, 8);
        put_u64(out, bits);
        return WRITTEN;
    }
    case 'T': {
        int64_t micros;
        if (type != SQLITE_TEXT || parse_time(api.column_text(st, c), api.column_bytes(st, c), &micros)) {
            PyObject *found = call_hook(time_hook, st, c, thread);
            if (!found) return hook_failed(thread, problem, "a time");
            micros = PyLong_AsLongLong(found);
            Py_DECREF(found);
            if (PyErr_Occurred()) return PYTHON_ERROR;
            *thread = PyEval_SaveThread();
        }
        put_u32(out, 8);
        put_u64(out, (uint64_t)micros);
        return WRITTEN;
    }
    case 'j': {
        PyObject *found = NULL;
        const unsigned char *text;
        Py_ssize_t n;
        if (type == SQLITE_TEXT) {
            text = api.column_text(st, c);
            n = api.column_bytes(st, c);
        } else if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) {
            found = call_hook(number_hook, st, c, thread);
            text = found ? (const unsigned char *)PyUnicode_AsUTF8AndSize(found, &n) : NULL;
            if (!text) {
                Py_XDECREF(found);
                return hook_failed(thread, problem, "a JSON document");
            }
        } else
            return problem->expected = "a JSON document", BAD_VALUE;
        int written = reserve(out, 5 + (size_t)n) ? NO_MEMORY : WRITTEN;
        if (written == WRITTEN) {
            put_u32(out, (uint32_t)n + 1);
            put(out, "\1", 1); /* jsonb's binary format: version 1, then the text */
            put(out, text, n);
        }
        if (found) {
            Py_DECREF(found);
            *thread = PyEval_SaveThread();
        }
        return written;
    }
    }
    return problem->expected = "a known kind of value", BAD_VALUE;
}

/* Add the row just written (its fields at ``starts`` in ``out``) to ``docs`` if any of its jsonb fields is not
 * NULL: its key, then each document after a unit separator (nothing for NULL), rows apart by record
 * separators. No JSON text holds either: JSON allows no control character outside its strings' escapes. */
static int keep_documents(sqlite3_stmt *st, const char *kinds, int columns, Buffer *out, const size_t *starts,
                          Buffer *docs) {
    int present = 0;
    for (int c = 0; c < columns; c++)
        if (kinds[c] == 'j' && memcmp(out->data + starts[c], "\377\377\377\377", 4)) present = 1;
    if (!present) return WRITTEN;
    int n = api.column_bytes(st, 0);
    const unsigned char *key = api.column_text(st, 0);
    if (reserve(docs, 1 + (size_t)n)) return NO_MEMORY;
    if (docs->size) put(docs, "\036", 1);
    put(docs, key, n);
    for (int c = 0; c < columns; c++) {
        if (kinds[c] != 'j') continue;
        size_t end = c + 1 < columns ? starts[c + 1] : out->size, size = end - starts[c];
        if (reserve(docs, size)) return NO_MEMORY;
        put(docs, "\037", 1);
        if (size > 4) put(docs, out->data + starts[c] + 5, size - 5); /* after the length and jsonb's version */
    }
    return WRITTEN;
}

/* Step through the rows, writing COPY data to ``out``, canonical data to ``canonical`` and the documents to
 * ``docs`` (both only with jsonb fields); the last row's first column goes to ``key``. Runs without the GIL,
 * except on PYTHON_ERROR. */
static int write_rows(sqlite3_stmt *st, const char *kinds, int columns, int documents, Buffer *out,
                      Buffer *canonical, Buffer *docs, Buffer *key, long long *rows, int *step_result,
                      PyObject *time_hook, PyObject *number_hook, PyThreadState **thread, Problem *problem) {
    size_t *starts = malloc(sizeof(size_t) * columns);
    if (!starts || reserve(out, SIGNATURE_SIZE) || reserve(canonical, SIGNATURE_SIZE)) return free(starts), NO_MEMORY;
    put(out, SIGNATURE, SIGNATURE_SIZE);
    put(canonical, SIGNATURE, SIGNATURE_SIZE);
    int written = WRITTEN;
    while (written == WRITTEN && (*step_result = api.step(st)) == SQLITE_ROW) {
        if (reserve(out, 2) || reserve(canonical, 2)) {
            written = NO_MEMORY;
            break;
        }
        put_u16(out, (uint16_t)columns);
        if (documents) put_u16(canonical, (uint16_t)(columns - documents));
        for (int c = 0; c < columns && written == WRITTEN; c++) {
            starts[c] = out->size;
            written = write_field(st, c, kinds[c], out, time_hook, number_hook, thread, problem);
            if (written == WRITTEN && documents && kinds[c] != 'j')
                written = reserve(canonical, out->size - starts[c]) ? NO_MEMORY : WRITTEN;
            if (written == WRITTEN && documents && kinds[c] != 'j')
                put(canonical, out->data + starts[c], out->size - starts[c]);
        }
        if (written == WRITTEN && documents) written = keep_documents(st, kinds, columns, out, starts, docs);
        if (written != WRITTEN) break;
        ++*rows;
        int n = api.column_bytes(st, 0);
        const unsigned char *text = api.column_text(st, 0);
        key->size = 0;
        if (reserve(key, (size_t)n + 1)) written = NO_MEMORY;
        else {
            put(key, text, n);
            key->data[n] = '\0';
        }
    }
    free(starts);
    if (written != WRITTEN) return written;
    if (reserve(out, 2) || reserve(canonical, 2)) return NO_MEMORY;
    put_u16(out, 0xFFFF);
    put_u16(canonical, 0xFFFF);
    return WRITTEN;
}

static PyObject *Reader_batch(Reader *self, PyObject *args) {
    const char *sql, *kinds;
    PyObject *params, *time_hook, *number_hook;
    if (!PyArg_ParseTuple(args, "sOsOO", &sql, &params, &kinds, &time_hook, &number_hook)) return NULL;
    if (!self->db) return PyErr_SetString(PyExc_ValueError, "the reader is closed"), NULL;
    if (self->busy) return PyErr_SetString(PyExc_RuntimeError, "the reader is reading a batch already"), NULL;
    params = PySequence_Fast(params, "params must be a sequence");
    if (!params) return NULL;
    sqlite3_stmt *st = NULL;
    PyObject *result = NULL;
    Buffer *out = &self->out, *canonical = &self->canonical, *docs = &self->docs, *key = &self->key;
    out->size = canonical->size = docs->size = key->size = 0;
    if (api.prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK) {
        PyErr_Format(PyExc_ValueError, "%s", api.errmsg(self->db));
        goto done;
    }
    int columns = (int)strlen(kinds), documents = 0;
    for (int c = 0; c < columns; c++) documents += kinds[c] == 'j';
    if (api.column_count(st) != columns || columns == 0) {
        PyErr_Format(PyExc_ValueError, "%d kinds for a query of %d columns", columns, api.column_count(st));
        goto done;
    }
    if (bind(st, params)) goto done;
    long long rows = 0;
    int step_result = SQLITE_DONE;
    Problem problem = {0};
    self->busy = 1;
    PyThreadState *thread = PyEval_SaveThread();
    int written = write_rows(st, kinds, columns, documents, out, canonical, docs, key, &rows,
                             &step_result, time_hook, number_hook, &thread, &problem);
    if (written != PYTHON_ERROR) PyEval_RestoreThread(thread);
    self->busy = 0;
    if (written == NO_MEMORY) PyErr_NoMemory();
    else if (written == BAD_VALUE) {
        PyObject *value = column_object(st, problem.column);
        PyObject *error = value ? Py_BuildValue("(isN)", problem.column, problem.expected, value) : NULL;
        if (error) PyErr_SetObject(BadValue, error);
        Py_XDECREF(error);
    } else if (written == WRITTEN && step_result != SQLITE_DONE)
        PyErr_Format(PyExc_ValueError, "%s", api.errmsg(self->db));
    else if (written == WRITTEN) {
        PyObject *last = !rows ? Py_NewRef(Py_None)
                         : kinds[0] == 'u' || kinds[0] == 't'
                             ? PyUnicode_DecodeUTF8(key->data, (Py_ssize_t)key->size, "strict")
                             : PyLong_FromString(key->data, NULL, 10);
        PyObject *rest = documents ? PyBytes_FromStringAndSize(canonical->data, (Py_ssize_t)canonical->size)
                                   : Py_NewRef(Py_None);
        PyObject *found = PyBytes_FromStringAndSize(docs->data, (Py_ssize_t)docs->size);
        if (last && rest && found)
            result = Py_BuildValue("(LOy#OO)", rows, last, out->data, (Py_ssize_t)out->size, rest, found);
        Py_XDECREF(last);
        Py_XDECREF(rest);
        Py_XDECREF(found);
    }
done:
    if (st) api.finalize(st);
    Py_DECREF(params);
    return result;
}

static PyMethodDef Reader_methods[] = {
    {"batch", (PyCFunction)Reader_batch, METH_VARARGS,
     "batch(sql, params, kinds, time_hook, number_hook) -> (rows, last_key, copy_data, canonical, documents)"},
    {"close", (PyCFunction)Reader_close, METH_NOARGS, "Close the SQLite connection."},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "panopipe.catalog.transfer._sqlite_copy.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A SQLite connection whose query results come out as PostgreSQL binary COPY data.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
};

static PyMethodDef module_methods[] = {
    {"load_sqlite", load_sqlite, METH_O,
     "load_sqlite(path) -> bool: take SQLite's functions from that shared object (or its dependencies)."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sqlite_copy", "SQLite query results as PostgreSQL binary COPY data.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__sqlite_copy(void) {
    if (PyType_Ready(&ReaderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    BadValue = PyErr_NewExceptionWithDoc("panopipe.catalog.transfer._sqlite_copy.BadValue",
                                         "A value that does not fit its column: (column, expected, value).",
                                         PyExc_ValueError, NULL);
    if (!BadValue || PyModule_AddObjectRef(m, "BadValue", BadValue) < 0 ||
        PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
