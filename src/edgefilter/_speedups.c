/* The compiled reader of an AddressTable: parse a hit's address text and search the table
 * in one C call. Optional: edgefilter works without it (pure Python, the same answers),
 * and its answers are held to the pure reader's by tests/test_compiled.py.
 *
 * layer_of_hit(rules, key, ip) -> int
 *   layer_of_text on the table a SiteRules' hits are searched in: its layered table in
 *   ``rules.country_layers[key]`` when ``rules.needs_layers``, else ``rules.excluded_ips``;
 *   UNLAYERED (-3) when that layered table is not built yet (the Python side then decides
 *   from the tables apart), ASK_PYTHON (-2) for what layer_of_text leaves to Python.
 *
 * decision_of_hit(rules, key, ip) -> Decision | None | False
 *   the same, answered as the hot path uses it: the layer's decision (``bind_rules`` gives
 *   them), None outside every layer, False for Python to decide.
 *
 * decision_of_hit(rules, key, ip, ua, path, hostname, bot_verdicts) -> Decision | None | False
 *   the whole of should_track once a site's rules are found, as far as caches answer it:
 *   the address (when ``rules.needs_ip``) as above, then the path, hostname and user-agent
 *   rules from their matchers' cached verdicts, then the bot check from ``bot_verdicts``
 *   (the detector's cache), in that order; the decision of the first that excludes the hit,
 *   or the tracked one (``bind_checks`` gives them). False when the address is not answered
 *   (Python decides from the address on), None when the address passed but a later check
 *   is not answered here: a cache miss, a value that is not a plain ``str``, a matcher of a
 *   class not bound (Python makes the checks after the address).
 *
 * layer_of_text(table, ip) -> int
 *   the layer of the table holding the address (0 and up), OUTSIDE (-1) when none does, or
 *   ASK_PYTHON (-2) when this reader does not answer: ``ip`` is not a plain ``str`` of
 *   ASCII address text that ``socket.inet_pton`` reads (the lenient Python parser decides
 *   those: bytes, white space, brackets, zone ids, subclasses), or the table is not laid
 *   out as ``_layout`` says. It never raises.
 *
 * The text is read exactly as the pure hot path reads it: ``":" in ip`` picks IPv6, else
 * IPv4, and libc's inet_pton (what ``socket.inet_pton`` calls) parses it; an IPv4-mapped
 * IPv6 address is folded to IPv4. The table's fields are the ones ``_layout`` documents:
 * the packed form (a tuple of buckets of ``bytes``, searched with bytes' own ordering),
 * ``compact4`` (``array('Q')``, with its optional ``array('I')`` index) and ``compact6``
 * (``bytes`` of 17-byte records). The fields of an exact AddressTable are read at their
 * slot offsets, found once by ``bind``; any other object is read with getattr.
 *
 * Memory safety (tests/test_speedups_safety.py): anything that may run Python code (getattr
 * on an object not of a bound class, hashing or comparing a dict key that is not a plain
 * str, an allocation of a GC object, which may start a collection and its finalizers) may
 * free what the reader borrowed; so what is borrowed is held across it, or read after it.
 * A slot offset is bound only from a descriptor of the class's own layout; a field is read
 * only when its type (and a buffer's format and alignment) is the one _layout builds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#define OUTSIDE (-1)
#define ASK_PYTHON (-2)
#define UNLAYERED (-3)

/* _layout's constants, checked against the Python ones by bind(). */
#define FLAT_SHIFT 8
#define WIDE (-1)
#define COMPACT (-2)
#define LAYER_MASK 0x3F
#define COMPACT_PROBE 0x40
#define COMPACT_TAG_BITS 8
#define RECORD6 17 /* 16 address bytes and one tag byte */
#define MAX_TEXT 64

enum field { BUCKETS4, SHIFT4, BUCKETS6, SHIFT6, COMPACT4, INDEX4, COMPACT6, FIELD_COUNT };
static const char *field_names[FIELD_COUNT] = {
    "buckets4", "shift4", "buckets6", "shift6", "compact4", "compact_index4", "compact6",
};
static PyObject *field_strings[FIELD_COUNT];
static Py_ssize_t field_offsets[FIELD_COUNT];
static PyTypeObject *bound_type = NULL;

enum rules_field {
    EXCLUDED_IPS, NEEDS_LAYERS, COUNTRY_LAYERS, NEEDS_IP, HAS_PATTERNS, EXCLUDED_PATHS,
    EXCLUDED_HOSTNAMES, EXCLUDED_USER_AGENTS, BLOCK_BOTS, RULES_FIELD_COUNT
};
static const char *rules_field_names[RULES_FIELD_COUNT] = {
    "excluded_ips", "needs_layers", "country_layers", "needs_ip", "has_patterns",
    "excluded_paths", "excluded_hostnames", "excluded_user_agents", "block_bots",
};
static PyObject *rules_field_strings[RULES_FIELD_COUNT];
static Py_ssize_t rules_field_offsets[RULES_FIELD_COUNT];
static PyTypeObject *bound_rules_type = NULL;
static PyObject *bound_decisions = NULL; /* the Decision of each layer, by layer */

/* The checks after the address (bind_checks): the decision each answers, in this order. */
enum check { PATH_EXCLUDED, HOSTNAME_EXCLUDED, USER_AGENT_EXCLUDED, BOT_FOUND, TRACKED_HIT,
             CHECK_COUNT };
static PyObject *bound_checks = NULL; /* a tuple of CHECK_COUNT decisions */
/* The matcher classes whose ``verdicts`` (value -> bool) are read at their slot's offset. */
#define MAX_MATCHER_TYPES 4
static PyTypeObject *matcher_types[MAX_MATCHER_TYPES];
static Py_ssize_t verdicts_offsets[MAX_MATCHER_TYPES];
static int matcher_type_count = 0;
#define UNKNOWN (-1) /* a check not answered from a cache: Python makes it */

static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

/* The field of table, borrowed (NULL when missing); *owned is set when it must be released. */
static PyObject *
field_of(PyObject *table, enum field which, int *owned)
{
    *owned = 0;
    if (Py_TYPE(table) == bound_type) {
        return *(PyObject **)((char *)table + field_offsets[which]);
    }
    PyObject *value = PyObject_GetAttr(table, field_strings[which]);
    if (value == NULL) {
        PyErr_Clear();
        return NULL;
    }
    *owned = 1;
    return value;
}

/* The field of rules that are not exactly SiteRules, by getattr (new; NULL when missing). */
static PyObject *
rules_attribute(PyObject *rules, enum rules_field which)
{
    PyObject *value = PyObject_GetAttr(rules, rules_field_strings[which]);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

/* The field of a SiteRules, as field_of reads an AddressTable's (inline: the hot path reads
 * up to nine of them a hit). */
static inline PyObject *
rules_field_of(PyObject *rules, enum rules_field which, int *owned)
{
    if (Py_TYPE(rules) == bound_rules_type) {
        *owned = 0;
        return *(PyObject **)((char *)rules + rules_field_offsets[which]);
    }
    PyObject *value = rules_attribute(rules, which);
    *owned = value != NULL;
    return value;
}

static void
release(PyObject *value, int owned)
{
    if (owned) {
        Py_DECREF(value);
    }
}

/* bytes' own ordering (memcmp on the common length, then the shorter first): <0, 0, >0 */
static int
compare_bound(const unsigned char *key, Py_ssize_t width, PyObject *bound)
{
    Py_ssize_t length = PyBytes_GET_SIZE(bound);
    int order = memcmp(key, PyBytes_AS_STRING(bound), width < length ? width : length);
    if (order != 0) {
        return order;
    }
    return width < length ? -1 : (width > length ? 1 : 0);
}

/* The packed form: bisect_right over the address's bucket; the end found names the layer. */
static int
search_buckets(PyObject *buckets, long shift, const unsigned char *key, Py_ssize_t width)
{
    if (!PyTuple_CheckExact(buckets)) {
        return ASK_PYTHON;
    }
    Py_ssize_t slot;
    if (shift == WIDE) {
        slot = (Py_ssize_t)key[0] << 8 | key[1];
    }
    else if (shift >= 0 && shift <= FLAT_SHIFT) {
        slot = key[0] >> shift;
    }
    else {
        return ASK_PYTHON;
    }
    if (slot >= PyTuple_GET_SIZE(buckets)) {
        return ASK_PYTHON;
    }
    PyObject *bucket = PyTuple_GET_ITEM(buckets, slot);
    if (!PyTuple_CheckExact(bucket)) {
        return ASK_PYTHON;
    }
    Py_ssize_t low = 0, high = PyTuple_GET_SIZE(bucket);
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        PyObject *bound = PyTuple_GET_ITEM(bucket, middle);
        if (!PyBytes_CheckExact(bound)) {
            return ASK_PYTHON;
        }
        if (compare_bound(key, width, bound) < 0) {
            high = middle;
        }
        else {
            low = middle + 1;
        }
    }
    if (!(low & 1)) {
        return OUTSIDE;
    }
    if (low >= PyTuple_GET_SIZE(bucket)) {
        return ASK_PYTHON;
    }
    PyObject *end = PyTuple_GET_ITEM(bucket, low);
    if (!PyBytes_CheckExact(end) || PyBytes_GET_SIZE(end) != width + 1) {
        return ASK_PYTHON;
    }
    return (unsigned char)PyBytes_AS_STRING(end)[width];
}

/* Whether a buffer holds items of the one-letter struct format typecode (what array() of
 * that typecode exports), each of size bytes and aligned to it: what _layout builds; a
 * double's bits are no bound, nor a misaligned word a load the C allows. (An empty array
 * exports a static byte, aligned to nothing: nothing is loaded from it.) */
static int
holds_items(const Py_buffer *view, char typecode, Py_ssize_t size)
{
    return view->format != NULL && view->format[0] == typecode && view->format[1] == '\0'
           && view->itemsize == size
           && (view->len == 0 || ((uintptr_t)view->buf & (uintptr_t)(size - 1)) == 0);
}

/* compact4: bisect_right over array('Q') (within the first byte's slice when indexed). */
static int
search_compact4(PyObject *values, PyObject *offsets, const unsigned char *key)
{
    Py_buffer view, index_view;
    if (PyObject_GetBuffer(values, &view, PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return ASK_PYTHON;
    }
    int answer = ASK_PYTHON;
    Py_ssize_t count = view.len / 8, low = 0, high = count;
    if (!holds_items(&view, 'Q', 8)) {
        goto done;
    }
    if (offsets != Py_None) {
        if (PyObject_GetBuffer(offsets, &index_view, PyBUF_FORMAT) < 0) {
            PyErr_Clear();
            goto done;
        }
        const uint32_t *starts = (const uint32_t *)index_view.buf;
        int usable = holds_items(&index_view, 'I', 4) && index_view.len == 257 * 4;
        if (usable) {
            low = starts[key[0]];
            high = starts[key[0] + 1];
        }
        PyBuffer_Release(&index_view);
        if (!usable || low > high || high > count) {
            goto done;
        }
    }
    const uint64_t *bounds = (const uint64_t *)view.buf;
    uint64_t probe = ((uint64_t)key[0] << 24 | (uint64_t)key[1] << 16 | (uint64_t)key[2] << 8 |
                      key[3]) << COMPACT_TAG_BITS | COMPACT_PROBE;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (probe < bounds[middle]) {
            high = middle;
        }
        else {
            low = middle + 1;
        }
    }
    if (!(low & 1)) {
        answer = OUTSIDE;
    }
    else if (low < count) {
        answer = (int)(bounds[low] & LAYER_MASK);
    }
done:
    PyBuffer_Release(&view);
    return answer;
}

/* compact6: bisect_right over 17-byte records (address, tag), the key tagged COMPACT_PROBE. */
static int
search_compact6(PyObject *records, const unsigned char *address)
{
    if (!PyBytes_CheckExact(records) || PyBytes_GET_SIZE(records) % RECORD6 != 0) {
        return ASK_PYTHON;
    }
    unsigned char key[RECORD6];
    memcpy(key, address, 16);
    key[16] = COMPACT_PROBE;
    const unsigned char *base = (const unsigned char *)PyBytes_AS_STRING(records);
    Py_ssize_t count = PyBytes_GET_SIZE(records) / RECORD6, low = 0, high = count;
    while (low < high) {
        Py_ssize_t middle = (low + high) / 2;
        if (memcmp(key, base + middle * RECORD6, RECORD6) < 0) {
            high = middle;
        }
        else {
            low = middle + 1;
        }
    }
    if (!(low & 1)) {
        return OUTSIDE;
    }
    return low < count ? base[low * RECORD6 + 16] & LAYER_MASK : ASK_PYTHON;
}

/* The layer of a packed address (4 or 16 bytes), as AddressTable.layer_of_packed reads it. */
static int
layer_of_address(PyObject *table, const unsigned char *packed, int is_v4)
{
    int owned_shift, owned, owned_index;
    PyObject *shift_object = field_of(table, is_v4 ? SHIFT4 : SHIFT6, &owned_shift);
    if (shift_object == NULL || !PyLong_CheckExact(shift_object)) {
        if (shift_object != NULL) {
            release(shift_object, owned_shift);
        }
        return ASK_PYTHON;
    }
    int overflow;
    long shift = PyLong_AsLongAndOverflow(shift_object, &overflow); /* exact int: no error */
    release(shift_object, owned_shift);
    if (overflow) {
        return ASK_PYTHON; /* past a C long: no shift _layout knows (nor -1, WIDE) */
    }
    int answer;
    if (shift == COMPACT) {
        PyObject *values = field_of(table, is_v4 ? COMPACT4 : COMPACT6, &owned);
        if (values == NULL) {
            return ASK_PYTHON;
        }
        if (is_v4) {
            PyObject *offsets = field_of(table, INDEX4, &owned_index);
            answer = offsets == NULL ? ASK_PYTHON : search_compact4(values, offsets, packed);
            if (offsets != NULL) {
                release(offsets, owned_index);
            }
        }
        else {
            answer = search_compact6(values, packed);
        }
        release(values, owned);
        return answer;
    }
    PyObject *buckets = field_of(table, is_v4 ? BUCKETS4 : BUCKETS6, &owned);
    if (buckets == NULL) {
        return ASK_PYTHON;
    }
    answer = search_buckets(buckets, shift, packed, is_v4 ? 4 : 16);
    release(buckets, owned);
    return answer;
}

/* Parse plain ASCII address text as the pure hot path does; 4 or 16 bytes into packed, 0 when
 * the text is not one (the Python side then reads it leniently), 4 for a mapped address. */
static int
parse_text(PyObject *ip, unsigned char packed[16])
{
    if (!PyUnicode_CheckExact(ip) || !PyUnicode_IS_READY(ip) || !PyUnicode_IS_ASCII(ip)) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(ip);
    const char *text = (const char *)PyUnicode_1BYTE_DATA(ip);
    if (length > MAX_TEXT || (Py_ssize_t)strlen(text) != length) {
        return 0; /* too long for an address, or a NUL inside: ValueError in Python */
    }
    if (memchr(text, ':', length) == NULL) {
        return inet_pton(AF_INET, text, packed) == 1 ? 4 : 0;
    }
    if (inet_pton(AF_INET6, text, packed) != 1) {
        return 0;
    }
    if (memcmp(packed, mapped_prefix, 12) == 0) {
        memmove(packed, packed + 12, 4);
        return 4;
    }
    return 16;
}

static PyObject *
layer_of_text(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        return PyLong_FromLong(ASK_PYTHON);
    }
    unsigned char packed[16];
    int width = parse_text(args[1], packed);
    if (width == 0) {
        return PyLong_FromLong(ASK_PYTHON);
    }
    return PyLong_FromLong(layer_of_address(args[0], packed, width == 4));
}

/* The layer of the table a SiteRules' hits are searched in, as layer_of_hit answers. */
static int
hit_layer(PyObject *rules, PyObject *key, PyObject *ip)
{
    unsigned char packed[16];
    int width = parse_text(ip, packed);
    if (width == 0) {
        return ASK_PYTHON;
    }
    int owned_flag, owned_table, owned_layers;
    PyObject *needs_layers = rules_field_of(rules, NEEDS_LAYERS, &owned_flag);
    if (needs_layers == NULL) {
        return ASK_PYTHON;
    }
    int layered = needs_layers == Py_True;
    int known = layered || needs_layers == Py_False;
    release(needs_layers, owned_flag);
    if (!known) {
        return ASK_PYTHON;
    }
    if (!layered) {
        PyObject *table = rules_field_of(rules, EXCLUDED_IPS, &owned_table);
        if (table == NULL) {
            return ASK_PYTHON;
        }
        Py_INCREF(table); /* borrowed from rules: a table read by getattr runs Python code, */
        int layer = layer_of_address(table, packed, width == 4); /* which may drop it */
        Py_DECREF(table);
        release(table, owned_table);
        return layer;
    }
    PyObject *layers = rules_field_of(rules, COUNTRY_LAYERS, &owned_layers);
    if (layers == NULL || !PyDict_CheckExact(layers)) {
        if (layers != NULL) {
            release(layers, owned_layers);
        }
        return ASK_PYTHON;
    }
    Py_INCREF(layers); /* key's __hash__ or __eq__ (Python code) may replace it meanwhile */
    PyObject *table = PyDict_GetItemWithError(layers, key); /* borrowed */
    int layer;
    if (table == NULL) {
        layer = PyErr_Occurred() ? ASK_PYTHON : UNLAYERED; /* an unhashable key: Python */
        PyErr_Clear();
    }
    else {
        Py_INCREF(table); /* the dict may change while this reads it (another thread) */
        layer = layer_of_address(table, packed, width == 4);
        Py_DECREF(table);
    }
    Py_DECREF(layers);
    release(layers, owned_layers);
    return layer;
}

static PyObject *
layer_of_hit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        return PyLong_FromLong(ASK_PYTHON);
    }
    return PyLong_FromLong(hit_layer(args[0], args[1], args[2]));
}

/* A flag of a SiteRules: 1 for True, 0 for False, UNKNOWN for anything else (or none). */
static inline int
rules_flag(PyObject *rules, enum rules_field which)
{
    int owned;
    PyObject *flag = rules_field_of(rules, which, &owned);
    if (flag == NULL) {
        return UNKNOWN;
    }
    int answer = flag == Py_True ? 1 : (flag == Py_False ? 0 : UNKNOWN);
    release(flag, owned);
    return answer;
}

/* The verdict a matcher has cached for value: 1 excluded, 0 not, UNKNOWN when none is at
 * hand (a miss, value not a plain str, a matcher of a class bind_checks was not given). */
static int
cached_match(PyObject *matcher, PyObject *value)
{
    if (!PyUnicode_CheckExact(value)) {
        return UNKNOWN; /* a subclass, bytes, ...: matches() reads its plain text */
    }
    for (int which = 0; which < matcher_type_count; which++) {
        if (Py_TYPE(matcher) != matcher_types[which]) {
            continue;
        }
        PyObject *verdicts = *(PyObject **)((char *)matcher + verdicts_offsets[which]);
        if (verdicts == NULL || !PyDict_CheckExact(verdicts)) {
            return UNKNOWN;
        }
        Py_INCREF(verdicts); /* matches() may replace entries meanwhile (another thread) */
        PyObject *verdict = PyDict_GetItemWithError(verdicts, value); /* borrowed */
        int answer = verdict == Py_True ? 1 : (verdict == Py_False ? 0 : UNKNOWN);
        if (verdict == NULL) {
            PyErr_Clear();
        }
        Py_DECREF(verdicts);
        return answer;
    }
    return UNKNOWN;
}

/* The verdict of one pattern rule of a SiteRules for value: 1 excluded, 0 not (no such rule,
 * or no value: None is never excluded), UNKNOWN for Python to judge. */
static int
pattern_verdict(PyObject *rules, enum rules_field which, PyObject *value)
{
    int owned;
    PyObject *matcher = rules_field_of(rules, which, &owned);
    if (matcher == NULL) {
        return UNKNOWN;
    }
    int answer = matcher == Py_None || value == Py_None ? 0 : cached_match(matcher, value);
    release(matcher, owned);
    return answer;
}

/* The bot detector's cached verdict of ua (family, "" for a person): 1 a bot, 0 a person,
 * UNKNOWN when not cached or not a plain str (the detector's verdict() decides). */
static int
cached_bot(PyObject *verdicts, PyObject *ua)
{
    if (!PyDict_CheckExact(verdicts) || !PyUnicode_CheckExact(ua)) {
        return UNKNOWN;
    }
    Py_INCREF(verdicts);
    PyObject *family = PyDict_GetItemWithError(verdicts, ua); /* borrowed */
    int answer = UNKNOWN;
    if (family == NULL) {
        PyErr_Clear();
    }
    else if (PyUnicode_CheckExact(family)) {
        answer = PyUnicode_GetLength(family) > 0;
    }
    Py_DECREF(verdicts);
    return answer;
}

/* The checks of should_track after the address, in its order (path, hostname, user agent,
 * bots): the check that answers (a check index), or UNKNOWN for Python to make them. */
static int
check_after_address(PyObject *rules, PyObject *ua, PyObject *path, PyObject *hostname,
                    PyObject *bot_verdicts)
{
    int patterns = rules_flag(rules, HAS_PATTERNS);
    if (patterns == UNKNOWN) {
        return UNKNOWN;
    }
    if (patterns) {
        static const enum rules_field matchers[3] = {
            EXCLUDED_PATHS, EXCLUDED_HOSTNAMES, EXCLUDED_USER_AGENTS,
        };
        static const enum check excluded[3] = {
            PATH_EXCLUDED, HOSTNAME_EXCLUDED, USER_AGENT_EXCLUDED,
        };
        PyObject *values[3] = {path, hostname, ua};
        for (int which = 0; which < 3; which++) {
            int verdict = pattern_verdict(rules, matchers[which], values[which]);
            if (verdict != 0) {
                return verdict == 1 ? (int)excluded[which] : UNKNOWN;
            }
        }
    }
    int bots = rules_flag(rules, BLOCK_BOTS);
    if (bots == 1) {
        int bot = cached_bot(bot_verdicts, ua);
        if (bot != 0) {
            return bot == 1 ? BOT_FOUND : UNKNOWN;
        }
    }
    return bots == UNKNOWN ? UNKNOWN : TRACKED_HIT;
}

/* decision_of_hit with the hit's other fields (see the top of this file): the address when
 * the site reads it (a ``needs_ip`` not a bool: False, Python reads it), then the checks
 * after it from caches. */
static PyObject *
decision_of_whole_hit(PyObject *const *args)
{
    PyObject *rules = args[0];
    int reads_address = rules_flag(rules, NEEDS_IP);
    if (reads_address == UNKNOWN) {
        Py_RETURN_FALSE;
    }
    if (reads_address) {
        int layer = hit_layer(rules, args[1], args[2]);
        if (layer >= 0 && bound_decisions != NULL && layer < PyTuple_GET_SIZE(bound_decisions)) {
            return Py_NewRef(PyTuple_GET_ITEM(bound_decisions, layer));
        }
        if (layer != OUTSIDE) {
            Py_RETURN_FALSE;
        }
    }
    if (bound_checks == NULL) {
        Py_RETURN_NONE;
    }
    int check = check_after_address(rules, args[3], args[4], args[5], args[6]);
    return Py_NewRef(check == UNKNOWN ? Py_None : PyTuple_GET_ITEM(bound_checks, check));
}

/* decision_of_hit(rules, key, ip): the decision of the layer found (the tuple given to
 * bind_rules, indexed by layer), None outside every layer, False where layer_of_hit answers
 * less than OUTSIDE (Python decides). One test fewer on the hot path than a layer. With
 * the hit's ua, path, hostname and the bot verdicts too: decision_of_whole_hit. */
static PyObject *
decision_of_hit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 7) {
        return decision_of_whole_hit(args);
    }
    int layer = nargs == 3 ? hit_layer(args[0], args[1], args[2]) : ASK_PYTHON;
    if (layer >= 0 && bound_decisions != NULL && layer < PyTuple_GET_SIZE(bound_decisions)) {
        return Py_NewRef(PyTuple_GET_ITEM(bound_decisions, layer));
    }
    return Py_NewRef(layer == OUTSIDE ? Py_None : Py_False);
}

static PyObject *
layer_of_packed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_CheckExact(args[1])) {
        return PyLong_FromLong(ASK_PYTHON);
    }
    Py_ssize_t width = PyBytes_GET_SIZE(args[1]);
    if (width != 4 && width != 16) {
        return PyLong_FromLong(ASK_PYTHON);
    }
    const unsigned char *packed = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    return PyLong_FromLong(layer_of_address(args[0], packed, width == 4));
}

/* layers_of_texts(table, ips) -> list[int]: layer_of_text for each of a sequence of ips. */
static PyObject *
layers_of_texts(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "layers_of_texts takes a table and a sequence of ips");
        return NULL;
    }
    PyObject *ips = PySequence_Fast(args[1], "layers_of_texts takes a sequence of ips");
    if (ips != NULL && !PyTuple_CheckExact(ips)) {
        /* A tuple of a list's items: a table read by getattr runs Python code that may
         * change the list. */
        Py_SETREF(ips, PyList_AsTuple(ips));
    }
    if (ips == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(ips);
    PyObject *answers = PyList_New(count);
    if (answers == NULL) {
        Py_DECREF(ips);
        return NULL;
    }
    unsigned char packed[16];
    for (Py_ssize_t index = 0; index < count; index++) {
        int width = parse_text(PyTuple_GET_ITEM(ips, index), packed);
        int layer = width == 0 ? ASK_PYTHON : layer_of_address(args[0], packed, width == 4);
        PyList_SET_ITEM(answers, index, PyLong_FromLong(layer)); /* small ints: cached */
    }
    Py_DECREF(ips);
    return answers;
}

/* The attribute ``name`` of type as its instances find it: in the first class of its MRO
 * that has one (borrowed; NULL when none does). */
static PyObject *
class_attribute(PyTypeObject *type, const char *name)
{
    PyObject *mro = type->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) {
        return PyDict_GetItemString(type->tp_dict, name);
    }
    for (Py_ssize_t index = 0; index < PyTuple_GET_SIZE(mro); index++) {
        PyObject *base = PyTuple_GET_ITEM(mro, index);
        PyObject *found = PyDict_GetItemString(((PyTypeObject *)base)->tp_dict, name);
        if (found != NULL) {
            return found;
        }
    }
    return NULL;
}

/* The offsets of the object slots ``names`` of ``type`` (its own or inherited); -1 with
 * TypeError if one is not. */
static int
slot_offsets(PyTypeObject *type, const char **names, int count, Py_ssize_t *offsets)
{
    for (int which = 0; which < count; which++) {
        PyObject *descriptor = class_attribute(type, names[which]);
        if (descriptor == NULL || Py_TYPE(descriptor) != &PyMemberDescr_Type
            || !PyType_IsSubtype(type, PyDescr_TYPE(descriptor))) { /* another class's slot */
            PyErr_Format(PyExc_TypeError, "%s has no slot %s", type->tp_name, names[which]);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "slot %s of %s is not an object slot", names[which],
                         type->tp_name);
            return -1;
        }
        offsets[which] = member->offset;
    }
    return 0;
}

/* bind(cls, constants): read the slots of exact instances of cls at their offsets; check that
 * the layout's constants are the ones compiled in. */
static PyObject *
bind_table(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind takes a class and a dict of layout constants");
        return NULL;
    }
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        {"FLAT", FLAT_SHIFT},
        {"WIDE", WIDE},
        {"COMPACT", COMPACT},
        {"COMPACT_LAYER_MASK", LAYER_MASK},
        {"COMPACT_PROBE", COMPACT_PROBE},
        {"COMPACT_TAG_BITS", COMPACT_TAG_BITS},
        {"RECORD6", RECORD6},
        {"OUTSIDE_LAYER", OUTSIDE},
        {"ASK_PYTHON", ASK_PYTHON},
        {"UNLAYERED", UNLAYERED},
    };
    for (size_t index = 0; index < sizeof constants / sizeof constants[0]; index++) {
        PyObject *value = PyDict_GetItemString(args[1], constants[index].name);
        int overflow = 0; /* past a C long: not -1 with OverflowError left set */
        if (value == NULL || !PyLong_Check(value) ||
            PyLong_AsLongAndOverflow(value, &overflow) != constants[index].value || overflow) {
            PyErr_Format(PyExc_ValueError,
                         "layout constant %s is not %ld, the value _speedups was built with",
                         constants[index].name, constants[index].value);
            return NULL;
        }
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    Py_ssize_t offsets[FIELD_COUNT];
    if (slot_offsets(type, field_names, FIELD_COUNT, offsets) < 0) {
        return NULL;
    }
    memcpy(field_offsets, offsets, sizeof offsets);
    Py_INCREF(type);
    Py_XSETREF(bound_type, type);
    Py_RETURN_NONE;
}

/* bind_rules(cls, decisions): read exact instances of cls (SiteRules) at its slots'
 * offsets; decision_of_hit answers decisions[layer]. */
static PyObject *
bind_rules(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind_rules takes a class and a tuple of decisions");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    Py_ssize_t offsets[RULES_FIELD_COUNT];
    if (slot_offsets(type, rules_field_names, RULES_FIELD_COUNT, offsets) < 0) {
        return NULL;
    }
    memcpy(rules_field_offsets, offsets, sizeof offsets);
    Py_INCREF(type);
    Py_XSETREF(bound_rules_type, type);
    Py_XSETREF(bound_decisions, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* bind_checks(matchers, decisions): read the ``verdicts`` slot of exact instances of each
 * class of the tuple ``matchers`` (GlobMatcher, SubstringMatcher); decision_of_hit answers
 * the checks after the address with ``decisions`` (excluded path, hostname, user agent,
 * bot, tracked). Until it is called they are left to Python. */
static PyObject *
bind_checks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])
        || PyTuple_GET_SIZE(args[1]) != CHECK_COUNT
        || PyTuple_GET_SIZE(args[0]) > MAX_MATCHER_TYPES) {
        PyErr_Format(PyExc_TypeError,
                     "bind_checks takes a tuple of at most %d matcher classes and a tuple of %d "
                     "decisions", MAX_MATCHER_TYPES, CHECK_COUNT);
        return NULL;
    }
    static const char *verdicts_name[1] = {"verdicts"};
    Py_ssize_t count = PyTuple_GET_SIZE(args[0]);
    PyTypeObject *types[MAX_MATCHER_TYPES];
    Py_ssize_t offsets[MAX_MATCHER_TYPES];
    for (Py_ssize_t which = 0; which < count; which++) {
        PyObject *type = PyTuple_GET_ITEM(args[0], which);
        if (!PyType_Check(type)) {
            PyErr_SetString(PyExc_TypeError, "bind_checks takes matcher classes");
            return NULL;
        }
        types[which] = (PyTypeObject *)type;
        if (slot_offsets(types[which], verdicts_name, 1, &offsets[which]) < 0) {
            return NULL;
        }
    }
    PyTypeObject *released[MAX_MATCHER_TYPES];
    int released_count = matcher_type_count;
    memcpy(released, matcher_types, sizeof released);
    for (Py_ssize_t which = 0; which < count; which++) {
        matcher_types[which] = (PyTypeObject *)Py_NewRef(types[which]);
        verdicts_offsets[which] = offsets[which];
    }
    matcher_type_count = (int)count;
    Py_XSETREF(bound_checks, Py_NewRef(args[1]));
    for (int which = 0; which < released_count; which++) { /* may run Python: bound first */
        Py_DECREF(released[which]);
    }
    Py_RETURN_NONE;
}

/* scan_headers(headers, wanted, limit) -> tuple | None | False
 *   the middleware's one scan of a hit's headers, as EdgeFilterMiddleware._scan (its
 *   reference, held to it by tests/test_middleware_scan.py) makes it: the User-Agent and
 *   proxy header values read as Latin-1 (the user agent "" when absent, the proxy header
 *   None), the raw Content-Encoding, Authorization and Origin values (None); ``wanted``
 *   is the tuple of the six lower-case names by kind (_scan's kinds, 0 to 5: its
 *   ``_wanted`` dict as the middleware's ``_wanted_names``), matched by length and bytes,
 *   not hashed; None when a Content-Length of ASCII digits declares more than ``limit``
 *   bytes; False for Python to scan: a wanted header repeated (joined or refused there),
 *   or headers that are not a list or tuple of (bytes, bytes) pairs, or an odd ``wanted``
 *   (not a tuple of six bytes). It never raises. */
enum header_kind { USER_AGENT, FORWARDED, LENGTH, ENCODING, AUTHORIZATION, ORIGIN, KINDS };
static const int scanned_slot[KINDS] = {0, 1, -1, 2, 3, 4};
#define SCANNED 5

static PyObject *empty_text = NULL; /* "", made once */

static int
declares_more(const char *text, Py_ssize_t size, unsigned long long limit)
{
    if (size == 0) {
        return 0;
    }
    for (Py_ssize_t at = 0; at < size; at++) {
        if (text[at] < '0' || text[at] > '9') {
            return 0; /* not a length of digits: the app reads it as it will */
        }
    }
    while (size > 0 && *text == '0') {
        text++;
        size--;
    }
    if (size > 19) {
        return 1; /* past 2**63, so past any limit */
    }
    unsigned long long declared = 0;
    for (Py_ssize_t at = 0; at < size; at++) {
        declared = declared * 10 + (unsigned long long)(text[at] - '0');
    }
    return declared > limit;
}

static PyObject *
scan_headers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) != KINDS
        || !PyLong_CheckExact(args[2])
        || !(PyList_CheckExact(args[0]) || PyTuple_CheckExact(args[0]))) {
        Py_RETURN_FALSE;
    }
    long long limit = PyLong_AsLongLong(args[2]);
    if (limit < 0) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    PyObject *headers = args[0], *wanted = args[1];
    /* The wanted names by kind: each header name is matched by its length and bytes, as a
     * dict lookup would match it, without hashing the name (a fresh bytes object each
     * request, whose hash is never cached). */
    const char *wanted_names[KINDS];
    Py_ssize_t wanted_sizes[KINDS];
    for (int kind = 0; kind < KINDS; kind++) {
        PyObject *wanted_name = PyTuple_GET_ITEM(wanted, kind);
        if (!PyBytes_CheckExact(wanted_name)) {
            Py_RETURN_FALSE;
        }
        wanted_names[kind] = PyBytes_AS_STRING(wanted_name);
        wanted_sizes[kind] = PyBytes_GET_SIZE(wanted_name);
    }
    /* Made before the scan: the collection an allocation may start runs finalizers, which
     * may change the headers whose values the scan borrows; none is allocated after it but
     * strings, which start none. */
    PyObject *scanned = PyTuple_New(SCANNED);
    if (scanned == NULL) {
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    PyObject *found[SCANNED] = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t count = PySequence_Fast_GET_SIZE(headers);
    PyObject **items = PySequence_Fast_ITEMS(headers);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *pair = items[index];
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            goto python_scans;
        }
        PyObject *name = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyBytes_CheckExact(name) || !PyBytes_CheckExact(value)) {
            goto python_scans;
        }
        Py_ssize_t size = PyBytes_GET_SIZE(name);
        const char *text = PyBytes_AS_STRING(name);
        long kind = -1;
        for (int at = 0; at < KINDS; at++) {
            if (wanted_sizes[at] == size && memcmp(wanted_names[at], text, (size_t)size) == 0) {
                kind = at;
                break;
            }
        }
        if (kind < 0) {
            continue;
        }
        if (kind == LENGTH) {
            if (declares_more(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value),
                              (unsigned long long)limit)) {
                Py_DECREF(scanned);
                Py_RETURN_NONE;
            }
            continue;
        }
        int slot = scanned_slot[kind];
        if (found[slot] != NULL) {
            goto python_scans; /* repeated: Python joins or refuses it */
        }
        found[slot] = value;
    }
    for (int slot = 0; slot < SCANNED; slot++) {
        PyObject *value;
        if (slot < 2 && found[slot] != NULL) { /* the user agent and proxy header, as text */
            value = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(found[slot]),
                                           PyBytes_GET_SIZE(found[slot]), NULL);
            if (value == NULL) {
                PyErr_Clear();
                goto python_scans;
            }
        }
        else if (slot == 0) {
            value = Py_NewRef(empty_text);
        }
        else {
            value = Py_NewRef(found[slot] == NULL ? Py_None : found[slot]);
        }
        PyTuple_SET_ITEM(scanned, slot, value);
    }
    return scanned;
python_scans:
    Py_DECREF(scanned);
    Py_RETURN_FALSE;
}

/* record(cls, *items) -> cls
 *   a tuple subclass (a NamedTuple) of these items, as ``tuple.__new__(cls, items)`` makes
 *   it, without the intermediate tuple or the argument parsing of that call: the
 *   middleware's EdgeDecision of every hit. TypeError when cls is not a tuple subclass. */
static PyObject *
record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || !PyType_Check(args[0])
        || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "record takes a tuple subclass and its items");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    /* tuple itself: PyTuple_New, whose empty tuple is the one CPython keeps (another one
     * aborts a debug build when freed) */
    PyObject *made =
        type == &PyTuple_Type ? PyTuple_New(nargs - 1) : type->tp_alloc(type, nargs - 1);
    if (made == NULL) {
        return NULL;
    }
    for (Py_ssize_t index = 1; index < nargs; index++) {
        PyTuple_SET_ITEM(made, index - 1, Py_NewRef(args[index]));
    }
    return made;
}

static PyMethodDef methods[] = {
    {"layer_of_text", (PyCFunction)(void (*)(void))layer_of_text, METH_FASTCALL,
     "layer_of_text(table, ip): the layer holding ip, -1 outside, -2 for Python to read."},
    {"layer_of_hit", (PyCFunction)(void (*)(void))layer_of_hit, METH_FASTCALL,
     "layer_of_hit(rules, key, ip): layer_of_text on the table rules' hits are searched in."},
    {"decision_of_hit", (PyCFunction)(void (*)(void))decision_of_hit, METH_FASTCALL,
     "decision_of_hit(rules, key, ip[, ua, path, hostname, bot_verdicts]): the decision of "
     "layer_of_hit's layer (and of the cached checks after it), None, or False."},
    {"layer_of_packed", (PyCFunction)(void (*)(void))layer_of_packed, METH_FASTCALL,
     "layer_of_packed(table, packed): the layer holding a packed address, -1, or -2."},
    {"layers_of_texts", (PyCFunction)(void (*)(void))layers_of_texts, METH_FASTCALL,
     "layers_of_texts(table, ips): layer_of_text of each ip, as a list."},
    {"bind", (PyCFunction)(void (*)(void))bind_table, METH_FASTCALL,
     "bind(cls, constants): read exact instances of cls at its slots' offsets."},
    {"bind_rules", (PyCFunction)(void (*)(void))bind_rules, METH_FASTCALL,
     "bind_rules(cls, decisions): read SiteRules at its slots' offsets; decisions by layer."},
    {"bind_checks", (PyCFunction)(void (*)(void))bind_checks, METH_FASTCALL,
     "bind_checks(matchers, decisions): read matchers' verdicts; the checks' decisions."},
    {"scan_headers", (PyCFunction)(void (*)(void))scan_headers, METH_FASTCALL,
     "scan_headers(headers, wanted, limit): the middleware's header scan, None, or False."},
    {"record", (PyCFunction)(void (*)(void))record, METH_FASTCALL,
     "record(cls, *items): tuple.__new__(cls, items) without the intermediate tuple."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "edgefilter._speedups",
    "The compiled reader of AddressTable (optional; see _tables).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    for (int which = 0; which < FIELD_COUNT; which++) {
        field_strings[which] = PyUnicode_InternFromString(field_names[which]);
        if (field_strings[which] == NULL) {
            return NULL;
        }
    }
    for (int which = 0; which < RULES_FIELD_COUNT; which++) {
        rules_field_strings[which] = PyUnicode_InternFromString(rules_field_names[which]);
        if (rules_field_strings[which] == NULL) {
            return NULL;
        }
    }
    empty_text = PyUnicode_FromStringAndSize("", 0);
    if (empty_text == NULL) {
        return NULL;
    }
    return PyModule_Create(&module_definition);
}
