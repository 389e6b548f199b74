# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False, infer_types=False
"""The compiled pricing engine: ``pricing.engine`` step for step, in C (via Cython).

``pricing/engine.py`` is the reference and stays the readable specification; this module
mirrors it function by function (same names in comments: ``_unit_phase``, ``eligible``,
``BuyXGetYRule._same``, ``choose``/``_search``, ``_apply``, ``largest_remainder`` ...)
so a change there has one obvious place to be repeated here. Decision record:
docs/decisions/0014-compiled-pricing-engine.md.

How it stays identical:
- the per-snapshot index is *derived from the Python ruleset*: ``NativeRuleset`` copies
  every compiled rule's parameters into C structs and builds its per-(sku, category)
  line entries from ``Ruleset.line_rules``, so there is one definition of which rule
  can touch which line;
- all money is int64 with bounds checked on the way in (prices and rule amounts below
  2**32, quantities below 2**16, at most 4,096 lines: every sum fits in 2**60), and
  every product that could pass 2**63 is taken in 128 bits;
- whatever the C path does not cover exactly (a value out of those bounds, an error the
  reference would raise: unknown sku, currency mismatch, duplicate line ids ...) is
  priced by the Python engine instead, so errors are the reference's own exceptions.
  ``NativeRuleset.fallbacks`` counts such baskets; the tests demand 0 on valid input.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.dict cimport PyDict_GetItemWithError
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset

from pricing.model import Catalog
from pricing.result import Allocation, Applied, PricedBasket, PricedLine
from pricing.rules.bundle import BundleRule
from pricing.rules.coupon import CouponRule
from pricing.rules.item import BuyXGetYRule, GiftRule
from pricing.rules.markdown import MarkdownRule
from pricing.rules.tender import EarnRule, PointsTenderRule, StoredValueRule
from pricing.rules.threshold import ThresholdRule
from pricing.rules.tier import TierRule
from pricing.snapshot import ENGINE_VERSION

cdef extern from *:
    """
    typedef __int128 sf_i128;

    /* A NamedTuple instance without its Python-level __new__ (what tuple.__new__(cls, t)
       does in C): the caller fills every item before the object escapes. It is left
       untracked by the cyclic GC, as CPython untracks tuples of atomic values: the engine
       fills its result objects only with str, int, bool, None and tuples of these, which
       cannot form a reference cycle (saves the GC bookkeeping on ~250 objects a basket). */
    static PyObject *sf_alloc(PyObject *type, Py_ssize_t n) {
        PyTupleObject *op = PyObject_GC_NewVar(PyTupleObject, (PyTypeObject *)type, n);
        if (op == NULL) return NULL;
        for (Py_ssize_t i = 0; i < n; i++) op->ob_item[i] = NULL;
        return (PyObject *)op;
    }

    /* tp_dealloc of the result NamedTuples: what subtype_dealloc + tupledealloc do for a
       tuple subclass without __dict__, __weakref__, __del__ or finalizer (checked when it
       is installed), in one step. Also right when called as the base dealloc of a Python
       subclass (subtype_dealloc has then done the subclass's part, and leaves the type's
       reference to its first heap-type base: here). */
    static void sf_result_dealloc(PyObject *op) {
        PyTypeObject *tp = Py_TYPE(op);
        Py_ssize_t i = Py_SIZE(op);
        PyObject_GC_UnTrack(op);
        Py_TRASHCAN_BEGIN(op, sf_result_dealloc)
        while (--i >= 0) Py_XDECREF(((PyTupleObject *)op)->ob_item[i]);
        tp->tp_free(op);
        Py_TRASHCAN_END
        Py_DECREF(tp);
    }

    static void sf_set_result_dealloc(PyObject *type) {
        ((PyTypeObject *)type)->tp_dealloc = sf_result_dealloc;
    }

    static int sf_has_finalizer(PyObject *type) {
        PyTypeObject *tp = (PyTypeObject *)type;
        return tp->tp_finalize != NULL || tp->tp_del != NULL;
    }

    /* A pydantic model's field: read from the instance __dict__ (fields are plain
       entries there), falling back to getattr for anything else. New reference. */
    static PyObject *sf_field(PyObject *obj, PyObject *name) {
        PyObject **dp = _PyObject_GetDictPtr(obj);
        if (dp != NULL && *dp != NULL && PyDict_CheckExact(*dp)) {
            PyObject *v = PyDict_GetItemWithError(*dp, name);
            if (v != NULL) { Py_INCREF(v); return v; }
            if (PyErr_Occurred()) return NULL;
        }
        return PyObject_GetAttr(obj, name);
    }

    /* The instance __dict__ of a pydantic model (borrowed), or NULL. */
    static PyObject *sf_dict(PyObject *obj) {
        PyObject **dp = _PyObject_GetDictPtr(obj);
        return (dp != NULL && *dp != NULL && PyDict_CheckExact(*dp)) ? *dp : NULL;
    }

    /* d[key] borrowed, or NULL (no error left set). */
    static PyObject *sf_get(PyObject *d, PyObject *key) {
        PyObject *v = PyDict_GetItemWithError(d, key);
        if (v == NULL) PyErr_Clear();
        return v;
    }

    /* 1 and *out when v is an exact int within [lo, hi]; 0 otherwise (no error set). */
    static int sf_int(PyObject *v, long long lo, long long hi, int64_t *out) {
        int overflow = 0;
        long long x;
        if (!PyLong_CheckExact(v)) return 0;
        x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); return 0; }
        if (x < lo || x > hi) return 0;
        *out = x;
        return 1;
    }

    /* Python's str order (code points); both must be exact str. */
    static int sf_str_cmp(PyObject *a, PyObject *b) {
        if (a == b) return 0;
        if (PyUnicode_KIND(a) == PyUnicode_1BYTE_KIND && PyUnicode_KIND(b) == PyUnicode_1BYTE_KIND) {
            Py_ssize_t la = PyUnicode_GET_LENGTH(a), lb = PyUnicode_GET_LENGTH(b);
            int c = memcmp(PyUnicode_1BYTE_DATA(a), PyUnicode_1BYTE_DATA(b), la < lb ? la : lb);
            if (c) return c < 0 ? -1 : 1;
            return la < lb ? -1 : (la > lb ? 1 : 0);
        }
        return PyUnicode_Compare(a, b);
    }

    static int sf_str_eq(PyObject *a, PyObject *b) {
        if (a == b) return 1;
        if (!PyUnicode_CheckExact(a) || !PyUnicode_CheckExact(b)) return 0;
        return PyUnicode_GET_LENGTH(a) == PyUnicode_GET_LENGTH(b) && sf_str_cmp(a, b) == 0;
    }

    /* A str's hash (cached in the object after the first time). */
    static inline Py_hash_t sf_hash(PyObject *s) {
        Py_hash_t h = ((PyASCIIObject *)s)->hash;
        return h != -1 ? h : PyObject_Hash(s);
    }

    static inline void sf_prefetch(const void *p) { __builtin_prefetch(p); }

    /* Start loading n pydantic models of a tuple, their __dicts__ and the dicts' keys
       before reading them: the misses overlap instead of queueing one model at a time
       (a basket's lines are cold: the cloud and the bench price many different baskets). */
    static void sf_warm(PyObject *tuple, Py_ssize_t n) {
        PyObject **items = ((PyTupleObject *)tuple)->ob_item;
        Py_ssize_t k;
        for (k = 0; k < n; k++) {
            __builtin_prefetch(items[k]);
            __builtin_prefetch((char *)items[k] + 64);
        }
        for (k = 0; k < n; k++) {
            PyObject **dp = _PyObject_GetDictPtr(items[k]);
            if (dp != NULL && *dp != NULL) __builtin_prefetch(*dp);
        }
        for (k = 0; k < n; k++) {
            PyObject **dp = _PyObject_GetDictPtr(items[k]);
            if (dp != NULL && *dp != NULL && PyDict_CheckExact(*dp)) {
                char *keys = (char *)((PyDictObject *)*dp)->ma_keys;
                __builtin_prefetch(keys);
                __builtin_prefetch(keys + 64);
                __builtin_prefetch(keys + 128);
            }
        }
    }

    /* out[j] = d[names[j]] (borrowed) for j < nf, NULL where missing (no error left set):
       one pass over the dict's entries comparing key pointers (a pydantic model's
       __dict__ holds the interned field names, the same objects as names[]), then a
       plain lookup for any name not matched that way. */
    static void sf_fields(PyObject *d, PyObject **names, PyObject **out, int nf) {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        int j, left = nf;
        for (j = 0; j < nf; j++) out[j] = NULL;
        while (left && PyDict_Next(d, &pos, &k, &v)) {
            j = (int)pos - 1;  /* the usual case: the name at the same position */
            if (j < nf && names[j] == k) { if (out[j] == NULL) { out[j] = v; left--; } continue; }
            for (j = 0; j < nf; j++) {
                if (names[j] == k) { if (out[j] == NULL) { out[j] = v; left--; } break; }
            }
        }
        if (left) {
            for (j = 0; j < nf; j++) {
                if (out[j] == NULL) {
                    out[j] = PyDict_GetItemWithError(d, names[j]);
                    if (out[j] == NULL) PyErr_Clear();
                }
            }
        }
    }

    /* The dict's version tag: CPython gives every dict state (each creation and each
       mutation) a fresh, process-unique value. 0 (never cached) where it is not there. */
    static inline uint64_t sf_dict_tag(PyObject *d) {
    #if PY_VERSION_HEX < 0x030C0000
        return ((PyDictObject *)d)->ma_version_tag;
    #else
        return 0;
    #endif
    }

    static inline int sf_ctz(uint64_t x) { return __builtin_ctzll(x); }
    static inline int sf_popcount(uint64_t x) { return __builtin_popcountll(x); }
    """
    ctypedef long long i128 "sf_i128"
    object sf_alloc(object type, Py_ssize_t n)
    void sf_set_result_dealloc(object type)
    int sf_has_finalizer(object type)
    object sf_field(object obj, object name)
    PyObject *sf_dict(PyObject *obj) noexcept
    PyObject *sf_get(PyObject *d, object key) noexcept
    void sf_fields(PyObject *d, PyObject **names, PyObject **out, int nf) noexcept
    uint64_t sf_dict_tag(PyObject *d) noexcept
    int sf_int(PyObject *v, long long lo, long long hi, int64_t *out) noexcept
    int sf_is_str "PyUnicode_CheckExact"(PyObject *o) noexcept
    int sf_str_cmp(PyObject *a, PyObject *b) except? -2
    int sf_str_eq(PyObject *a, PyObject *b) noexcept
    int sf_ctz(uint64_t x) noexcept
    void sf_prefetch(const void *p) noexcept
    void sf_warm(object tuple, Py_ssize_t n) noexcept
    Py_hash_t sf_hash(PyObject *s) noexcept
    int sf_popcount(uint64_t x) noexcept

# --- constants mirrored from pricing.rules.base / pricing.search --------------------------

cdef enum:
    MARKDOWN = 1
    TIER = 2
    ITEM = 3
    THRESHOLD = 4
    COUPON = 5
    TENDER = 6

cdef enum:
    K_MARKDOWN = 1
    K_TIER = 2
    K_BXGY = 3
    K_BXGY_OTHER = 4
    K_BUNDLE = 5
    K_GIFT = 6
    K_THRESHOLD = 7
    K_COUPON = 8
    K_COUPON_ITEM = 9
    K_EARN = 10
    K_POINTS = 11
    K_STORED = 12

cdef enum:
    BY_UNIT_DESC = 0  # dearest_first: (-unit, i)
    BY_UNIT_ASC = 1   # cheapest first: (unit, i)
    BY_UNIT_NET_DESC = 2  # item coupons: (-net/qty, i)

cdef int64_t MAX_NODES = 4096  # pricing.search.MAX_NODES
cdef int64_t BP = 10000  # pricing.money.BP
cdef int64_t DAY_MS = 86400000
cdef int64_t EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
cdef int64_t MAX_ORDINAL = 3652059  # date.max.toordinal(): datetime refuses beyond

# Bounds under which int64 (and int128 products) are exact; anything else is priced by the
# Python engine. Prices/amounts < 2**32 and quantities < 2**16 give line nets < 2**48,
# and with at most 2**12 lines every total stays below 2**60.
cdef int64_t MONEY_MAX = 4294967295  # 2**32 - 1
cdef int64_t QTY_MAX = 65535
cdef int LINES_MAX = 4096
cdef int64_t PARAM_MAX = 2147483647  # 2**31 - 1: counts and sizes in rules
cdef int64_t BIG = 4611686018427387904  # 2**62
cdef int64_t TIME_MAX = 2305843009213693952  # 2**61: epoch ms, best-before times
cdef int64_t UNBOUNDED = 1073741824  # 1 << 30, the engine's "no limit"
cdef int64_t SMALL = 2147483648  # 2**31: two of these multiply within int64
cdef int64_t PERCENT_SMALL = 140737488355328  # 2**47: 2 * x * 10_000 stays within int64

cdef object _EMPTY = ""
cdef object _TENDER = "tender"
cdef object _PHASE_NAMES = {1: "markdown", 2: "tier", 3: "item", 4: "threshold", 5: "coupon", 6: "tender"}
cdef object _Allocation = Allocation
cdef object _Catalog = Catalog
cdef object _Applied = Applied
cdef object _PricedLine = PricedLine
cdef object _PricedBasket = PricedBasket
cdef object _ENGINE_VERSION = ENGINE_VERSION

for _t in (Allocation, Applied, PricedLine, PricedBasket):
    # sf_alloc fills tuple slots directly and sf_result_dealloc frees them as a tuple's:
    # only valid for plain NamedTuple subclasses (no __dict__, __weakref__ or finalizer)
    assert issubclass(_t, tuple) and _t.__basicsize__ == tuple.__basicsize__
    assert _t.__itemsize__ == tuple.__itemsize__ and not _t.__dictoffset__
    assert not _t.__weakrefoffset__ and not sf_has_finalizer(_t)
    sf_set_result_dealloc(_t)  # freeing the result is a third of the time per basket

# field names, interned once
cdef object F_CURRENCY = "currency"
cdef object F_LINES = "lines"
cdef object F_COUPONS = "coupons"
cdef object F_ID = "id"
cdef object F_ITEMS = "items"
cdef object F_VERSION = "version"
cdef object F_HASH = "_hash"  # Catalog.ruleset_hash()'s cached value
cdef object F_TIER = "tier"
cdef object F_POINTS_BAL = "points_balance"
cdef object F_SV_BAL = "stored_value_balance"
cdef object F_POINTS_REQ = "points_to_redeem"
cdef object F_SV_REQ = "stored_value_to_use"
cdef object F_OFFSET = "utc_offset_min"
cdef object F_LINE_ID = "line_id"
cdef object F_SKU = "sku"
cdef object F_QTY = "qty"
cdef object F_UNIT_PRICE = "unit_price"
cdef object F_BEST_BEFORE = "best_before_ms"
cdef object F_CATEGORY = "category"
cdef object F_PRICE = "price"
cdef object F_EARNS = "earns_points"


# --- the compiled ruleset ---------------------------------------------------------------

cdef struct CRule:
    # first cache line: what gathering, eligibility and the search read for every rule
    int phase
    int kind
    int group
    int comb_off
    int comb_len
    int slot_base
    int nslots
    int ncomp
    int comp_off
    bint all_groups
    bint always
    bint has_within
    bint repeat
    bint everything
    # parameters
    int64_t percent_bp
    int64_t amount_off
    int64_t new_price
    int64_t within_ms
    int64_t buy_qty
    int64_t get_qty
    int64_t max_sets
    int64_t min_spend
    int64_t max_units
    int64_t gift_qty
    int64_t min_qty
    int64_t price
    int64_t points
    int64_t per_minor
    int64_t block_points
    int64_t block_minor
    int64_t max_share_bp
    int64_t min_points
    # conditions (pricing.rules.base.Rule.active), read only when not ``always``
    bint has_from
    bint has_until
    bint has_time
    bint needs_member
    int64_t valid_from
    int64_t valid_until
    int64_t time_from
    int64_t time_until
    int64_t weekdays
    int64_t month_days
    PyObject *stores
    PyObject *tiers
    # Python objects, owned by NativeRuleset.keep
    PyObject *id
    PyObject *kind_name
    PyObject *phase_name
    PyObject *detail
    PyObject *code
    PyObject *skus
    PyObject *cats
    PyObject *excl


cdef struct Hot:
    # what every call reads for many rules, 16 bytes a rule (CRule is ~300): the index,
    # the conditions shortcut and the combination profile stay in L1/L2
    int group
    int comb_off
    int comb_len
    int slot_base
    unsigned char phase
    unsigned char always
    unsigned char all_groups


cdef struct RS:
    CRule *rules
    Hot *hot
    int nrules
    int *comb
    int64_t *sizes
    int total_slots
    int max_ncomp
    int n_ew
    int *ew_rule
    int *ew_slot
    int n_sv
    int *sv
    int n_pt
    int *pt
    int n_earn
    int *earn


class _Unsupported(Exception):
    """A snapshot the C engine does not price exactly; the Python engine prices it."""


cdef int64_t _bounded(object v, int64_t lo, int64_t hi, str what) except? -1:
    cdef int64_t out = 0
    if not sf_int(<PyObject *>v, lo, hi, &out):
        raise _Unsupported(f"{what}={v!r}")
    return out


cdef class LineEntry:
    """The rules that can touch a line of one (sku, category), from ``Ruleset.line_rules``."""

    cdef object category
    # the catalog item this entry last saw for its sku, and its fields (the item is
    # frozen and held here, so its identity cannot be reused while it is compared)
    cdef object item
    # the version tag of the catalog.items dict this entry was last checked against:
    # while that dict is unchanged, the line needs no catalog lookup at all
    cdef uint64_t tag
    cdef int64_t price
    cdef object price_o  # the item's price as an exact int (its own object when it is one)
    cdef bint earns
    cdef int nunit
    cdef int *unit
    cdef int nopt
    cdef int *opt_rule
    cdef int *opt_slot
    cdef unsigned char *ew_excl
    cdef unsigned char *earn_match

    def __dealloc__(self):
        PyMem_Free(self.unit)  # the other arrays live in the same block


cdef void *_alloc(Py_ssize_t n) except NULL:
    cdef void *p = PyMem_Malloc(n if n > 0 else 1)
    if p == NULL:
        raise MemoryError()
    memset(p, 0, n if n > 0 else 1)
    return p


cdef class NativeRuleset:
    """A ``Ruleset`` copied into C structs; built once per snapshot (``native.build``)."""

    cdef RS rs
    cdef list keep
    cdef dict entries
    cdef dict coupons
    cdef object version
    cdef object hash
    cdef object ew_excl
    cdef object earn_rules
    cdef readonly bint usable
    cdef readonly str why_not
    cdef readonly Py_ssize_t fallbacks
    """Baskets this ruleset handed to the Python engine (errors, out-of-range values)."""

    def __cinit__(self):
        memset(&self.rs, 0, sizeof(RS))

    def __dealloc__(self):
        PyMem_Free(self.rs.rules)
        PyMem_Free(self.rs.hot)
        PyMem_Free(self.rs.comb)
        PyMem_Free(self.rs.sizes)
        PyMem_Free(self.rs.ew_rule)
        PyMem_Free(self.rs.ew_slot)
        PyMem_Free(self.rs.sv)
        PyMem_Free(self.rs.pt)
        PyMem_Free(self.rs.earn)

    def __init__(self, ruleset):
        self.keep = []
        self.entries = {}
        self.coupons = {}
        self.version = ruleset.version
        self.hash = ruleset.hash
        self.usable = False
        self.why_not = ""
        try:
            self._build(ruleset)
            self.usable = True
        except _Unsupported as err:
            self.why_not = str(err)

    cdef PyObject *_obj(self, object o) except NULL:
        """A borrowed pointer for a CRule field; ``keep`` owns the reference."""
        self.keep.append(o)
        return <PyObject *>o

    cdef _build(self, ruleset):
        rules = ruleset.rules
        cdef int n = len(rules)
        cdef int o, k, total = 0
        cdef CRule *cr
        self.rs.nrules = n
        self.rs.rules = <CRule *>_alloc(n * sizeof(CRule))
        groups = {}
        for r in rules:
            groups.setdefault(r.group, len(groups))
        comb = []
        sizes = []
        for o in range(n):
            r = rules[o]
            if r.ordinal != o:
                raise _Unsupported("ordinals out of order")
            cr = &self.rs.rules[o]
            cr.phase = r.phase
            cr.group = groups[r.group]
            cr.all_groups = bool(r.all_groups)
            ids = sorted(groups[g] for g in r.combines if g in groups)
            cr.comb_off = len(comb)
            cr.comb_len = len(ids)
            comb.extend(ids)
            cr.always = bool(r.always)
            self._conditions(cr, r.c)
            cr.id = self._obj(r.id)
            cr.kind_name = self._obj(r.kind)
            cr.phase_name = self._obj(_PHASE_NAMES[r.phase])
            cr.detail = <PyObject *>_EMPTY
            cr.nslots = ruleset.slots[o]
            cr.slot_base = total
            total += cr.nslots
            self._params(cr, r, sizes)
        self.rs.total_slots = total
        self.rs.hot = <Hot *>_alloc(n * sizeof(Hot))
        for o in range(n):
            cr = &self.rs.rules[o]
            self.rs.hot[o].group = cr.group
            self.rs.hot[o].comb_off = cr.comb_off
            self.rs.hot[o].comb_len = cr.comb_len
            self.rs.hot[o].slot_base = cr.slot_base
            self.rs.hot[o].phase = cr.phase
            self.rs.hot[o].always = cr.always
            self.rs.hot[o].all_groups = cr.all_groups
        self.rs.comb = <int *>_alloc(len(comb) * sizeof(int))
        for k in range(len(comb)):
            self.rs.comb[k] = comb[k]
        self.rs.sizes = <int64_t *>_alloc(len(sizes) * sizeof(int64_t))
        for k in range(len(sizes)):
            self.rs.sizes[k] = sizes[k]
        ew = ruleset.everywhere_options
        self.rs.n_ew = len(ew)
        self.rs.ew_rule = <int *>_alloc(len(ew) * sizeof(int))
        self.rs.ew_slot = <int *>_alloc(len(ew) * sizeof(int))
        for k in range(len(ew)):
            self.rs.ew_rule[k] = ew[k][0].ordinal
            self.rs.ew_slot[k] = ew[k][1]
        self.ew_excl = tuple(e[2] for e in ew)
        self.rs.n_sv = len(ruleset.stored_value)
        self.rs.sv = <int *>_alloc(self.rs.n_sv * sizeof(int))
        for k in range(self.rs.n_sv):
            self.rs.sv[k] = ruleset.stored_value[k].ordinal
        self.rs.n_pt = len(ruleset.points_tender)
        self.rs.pt = <int *>_alloc(self.rs.n_pt * sizeof(int))
        for k in range(self.rs.n_pt):
            self.rs.pt[k] = ruleset.points_tender[k].ordinal
        self.earn_rules = tuple(ruleset.earn)
        self.rs.n_earn = len(ruleset.earn)
        self.rs.earn = <int *>_alloc(self.rs.n_earn * sizeof(int))
        for k in range(self.rs.n_earn):
            self.rs.earn[k] = ruleset.earn[k].ordinal
        for code, found in ruleset.coupons.items():
            self.coupons[code] = tuple(r.ordinal for r in found)

    cdef _conditions(self, CRule *cr, c):
        cdef int64_t d
        if c.valid_from_ms is not None:
            cr.has_from = True
            cr.valid_from = _bounded(c.valid_from_ms, -BIG, BIG, "valid_from_ms")
        if c.valid_until_ms is not None:
            cr.has_until = True
            cr.valid_until = _bounded(c.valid_until_ms, -BIG, BIG, "valid_until_ms")
        if c.stores:
            cr.stores = self._obj(tuple(c.stores))
        cr.needs_member = bool(c.member_only or c.tiers)
        if c.tiers:
            cr.tiers = self._obj(tuple(c.tiers))
        for day in c.weekdays:
            d = _bounded(day, 1, 7, "weekday")
            cr.weekdays |= (<int64_t>1) << d
        for day in c.month_days:
            d = _bounded(day, 1, 31, "month_day")
            cr.month_days |= (<int64_t>1) << d
        if c.time_from_min is not None and c.time_until_min is not None:
            cr.has_time = True
            cr.time_from = _bounded(c.time_from_min, 0, 1440, "time_from_min")
            cr.time_until = _bounded(c.time_until_min, 0, 1440, "time_until_min")

    cdef _params(self, CRule *cr, r, list sizes):
        cdef type t = type(r)
        if t is MarkdownRule or t is TierRule:
            cr.kind = K_MARKDOWN if t is MarkdownRule else K_TIER
            cr.percent_bp = _bounded(r.percent_bp, 0, BP, "percent_bp")
            cr.amount_off = _bounded(r.amount_off, 0, MONEY_MAX, "amount_off")
            if not cr.percent_bp and not cr.amount_off:
                if r.new_price is None:
                    raise _Unsupported("unit rule without a benefit")
                cr.new_price = _bounded(r.new_price, 0, MONEY_MAX, "new_price")
            if t is MarkdownRule and r.within_ms is not None:
                cr.has_within = True
                cr.within_ms = _bounded(r.within_ms, 0, TIME_MAX, "near_expiry_within_min")
        elif t is BuyXGetYRule:
            cr.kind = K_BXGY if r.get_scope is None else K_BXGY_OTHER
            cr.buy_qty = _bounded(r.buy_qty, 1, PARAM_MAX, "buy_qty")
            cr.get_qty = _bounded(r.get_qty, 1, PARAM_MAX, "get_qty")
            cr.percent_bp = _bounded(r.percent_bp, 0, BP, "get_percent_bp")
            # at most 2**28 units in a basket: any limit above 1 << 30 acts like none
            cr.max_sets = min(_bounded(r.max_sets, 1, BIG, "max_applications"), UNBOUNDED)
            cr.detail = self._obj(f"buy {r.buy_qty} get {r.get_qty}")
        elif t is BundleRule:
            cr.kind = K_BUNDLE
            cr.ncomp = len(r.sizes)
            cr.comp_off = len(sizes)
            for size in r.sizes:
                sizes.append(_bounded(size, 1, PARAM_MAX, "component qty"))
            if cr.ncomp > self.rs.max_ncomp:
                self.rs.max_ncomp = cr.ncomp
            cr.price = _bounded(r.bundle_price, 0, MONEY_MAX, "bundle price")
            cr.max_sets = min(_bounded(r.max_sets, 1, BIG, "max_applications"), UNBOUNDED)
            cr.detail = self._obj(f"bundle for {r.bundle_price}")
        elif t is GiftRule:
            cr.kind = K_GIFT
            cr.gift_qty = _bounded(r.gift_qty, 1, PARAM_MAX, "gift_qty")
            cr.min_qty = _bounded(r.min_qty, 0, PARAM_MAX, "min_qty")
            cr.min_spend = _bounded(r.min_spend, 0, MONEY_MAX, "min_spend")
            cr.repeat = bool(r.repeat)
            cr.detail = self._obj(f"gift {r.gift_sku}")
        elif t is ThresholdRule:
            cr.kind = K_THRESHOLD
            self._spend(cr, r)
            cr.max_sets = _bounded(r.max_times, 1, BIG, "max_applications")
        elif t is CouponRule:
            cr.code = self._obj(r.code)
            cr.skus = self._obj(r.skus)
            cr.cats = self._obj(r.cats)
            cr.excl = self._obj(r.excl)
            cr.everything = bool(r.everything)
            if r.max_units is None:
                cr.kind = K_COUPON
                self._spend(cr, r)
                cr.max_sets = 1
            else:
                cr.kind = K_COUPON_ITEM
                cr.min_spend = _bounded(r.min_spend, 0, MONEY_MAX, "min_spend")
                cr.percent_bp = _bounded(r.percent_bp, 0, BP, "percent_bp")
                cr.amount_off = _bounded(r.amount_off, 0, MONEY_MAX, "amount_off")
                cr.max_units = _bounded(r.max_units, 1, PARAM_MAX, "max_units")
                what = f"{r.percent_bp / 100:g}%" if r.percent_bp else f"{r.amount_off}"
                cr.detail = self._obj(f"coupon {r.code}: {what} off x")
        elif t is EarnRule:
            cr.kind = K_EARN
            cr.points = _bounded(r.points, 1, PARAM_MAX, "points")
            cr.per_minor = _bounded(r.per_minor, 1, BIG, "per_minor")
            cr.detail = self._obj(f"{r.points} per {r.per_minor}")
        elif t is PointsTenderRule:
            cr.kind = K_POINTS
            cr.block_points = _bounded(r.block_points, 1, BIG, "block_points")
            cr.block_minor = _bounded(r.block_minor, 1, BIG, "block_minor")
            cr.max_share_bp = _bounded(r.max_share_bp, 0, BP, "max_share_bp")
            cr.min_points = _bounded(r.min_points, 0, BIG, "min_points")
        elif t is StoredValueRule:
            cr.kind = K_STORED
            cr.max_share_bp = _bounded(r.max_share_bp, 0, BP, "max_share_bp")
        else:
            raise _Unsupported(f"rule class {t.__name__}")

    cdef _spend(self, CRule *cr, r):
        """``spend_option`` parameters and its detail prefix."""
        cr.min_spend = _bounded(r.min_spend, 0, MONEY_MAX, "min_spend")
        cr.percent_bp = _bounded(r.percent_bp, 0, BP, "percent_bp")
        cr.amount_off = _bounded(r.amount_off, 0, MONEY_MAX, "amount_off")
        if r.percent_bp:
            cr.detail = self._obj(f"{r.percent_bp / 100:g}% off ")
        else:
            cr.detail = self._obj(
                f"{r.amount_off} off per {r.min_spend or 'basket'} x"
            )

    cdef LineEntry _entry(self, ruleset, object sku, object cat):
        cdef LineEntry e = LineEntry.__new__(LineEntry)
        cdef int k
        unit_c, opt_c = ruleset.line_rules(sku, cat)
        e.category = cat
        e.nunit = len(unit_c)
        e.nopt = len(opt_c)
        # one block (one or two cache lines for a typical sku), read together per call
        e.unit = <int *>_alloc((e.nunit + 2 * e.nopt) * sizeof(int) + self.rs.n_ew
                               + self.rs.n_earn)
        e.opt_rule = e.unit + e.nunit
        e.opt_slot = e.opt_rule + e.nopt
        e.ew_excl = <unsigned char *>(e.opt_slot + e.nopt)
        e.earn_match = e.ew_excl + self.rs.n_ew
        for k in range(e.nunit):
            e.unit[k] = unit_c[k].ordinal
        for k in range(e.nopt):
            e.opt_rule[k] = opt_c[k][0]
            e.opt_slot[k] = opt_c[k][1]
        for k in range(self.rs.n_ew):
            e.ew_excl[k] = sku in self.ew_excl[k]
        for k in range(self.rs.n_earn):
            e.earn_match[k] = bool(self.earn_rules[k].matches(sku, cat))
        return e


# --- per-call state ---------------------------------------------------------------------

cdef struct Opt:
    int rule
    int64_t value
    int64_t times
    int64_t detail_num  # appended to the rule's detail prefix; -1: the detail is constant
    int off
    int nl


cdef struct Ctx:
    RS *R
    int n
    int W  # 64-bit words in a line mask
    int err  # set when the Python engine must price this basket
    bint exact
    int64_t now
    int64_t weekday
    int64_t minute
    int64_t month_day
    bint has_member
    PyObject *tier
    PyObject *store_id
    int64_t *qty
    int64_t *base
    int64_t *unit
    int64_t *net
    int64_t *expiry
    unsigned char *has_expiry
    unsigned char *earns
    signed char *active
    # allocations, which are also each line's applied rules (engine: st.allocs/st.applied)
    int *rec_rule
    int64_t *rec_amount
    int *rec_next
    int nrec
    int caprec
    int *head
    int *tail
    # option pool of the phase being built
    int *olines
    int64_t *oweights
    uint64_t *omask
    int opool
    int capool
    # scratch, n entries each unless noted
    int *tmp_a
    int *tmp_b
    int *tmp_sort
    int64_t *tmp_w
    int64_t *tmp_w2
    i128 *tmp_r
    int64_t *left
    int *stamp
    int stamp_now
    int *runs_line  # max_ncomp * n
    int64_t *runs_cnt
    unsigned char *flag


cdef inline int64_t floordiv(int64_t a, int64_t b) noexcept:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t percent_of(int64_t amount, int64_t bp) noexcept:
    # pricing.money.percent_of: (2 * amount * bp + BP) // (2 * BP), half-up
    if amount < PERCENT_SMALL:
        return (2 * amount * bp + BP) / (2 * BP)
    return <int64_t>((2 * <i128>amount * bp + BP) / (2 * BP))


cdef inline bint has_group(int *comb, int n, int g) noexcept:
    cdef int lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if comb[mid] < g:
            lo = mid + 1
        else:
            hi = mid
    return lo < n and comb[lo] == g


cdef inline bint compat(RS *R, int a, int b) noexcept:
    """pricing.rules.base.compatible: may rules a and b discount the same line?"""
    cdef Hot *ra = &R.hot[a]
    cdef Hot *rb = &R.hot[b]
    if ra.group == rb.group:
        return False
    if not ra.all_groups and not has_group(R.comb + ra.comb_off, ra.comb_len, rb.group):
        return False
    if not rb.all_groups and not has_group(R.comb + rb.comb_off, rb.comb_len, ra.group):
        return False
    return True


cdef inline int active(Ctx *c, int o) noexcept:
    """Rule.active, cached per call (the engine's ``active`` dict)."""
    cdef signed char known = c.active[o]
    if known:
        return known > 0
    if c.R.hot[o].always:
        c.active[o] = 1
        return True
    cdef CRule *r = &c.R.rules[o]
    cdef bint ok = _active(c, r)
    c.active[o] = 1 if ok else -1
    return ok


cdef bint _active(Ctx *c, CRule *r) noexcept:
    cdef int found
    if r.always:
        return True
    if r.has_from and c.now < r.valid_from:
        return False
    if r.has_until and c.now >= r.valid_until:
        return False
    if r.stores != NULL:
        found = _contains(c, r.stores, c.store_id)
        if not found:
            return False
    if r.needs_member and not c.has_member:
        return False
    if r.tiers != NULL:
        found = _contains(c, r.tiers, c.tier)
        if not found:
            return False
    if r.weekdays and not ((r.weekdays >> c.weekday) & 1):
        return False
    if r.month_days and not ((r.month_days >> c.month_day) & 1):
        return False
    if r.has_time:
        if r.time_from <= r.time_until:
            if not (r.time_from <= c.minute < r.time_until):
                return False
        elif r.time_until <= c.minute < r.time_from:  # window wraps midnight
            return False
    return True


cdef int _contains(Ctx *c, PyObject *seq, PyObject *x) noexcept:
    """``x in seq`` for a tuple of str (stores, tiers); anything but a str or None in x
    is left to the Python engine."""
    cdef Py_ssize_t k
    cdef tuple t = <tuple>seq
    for k in range(len(t)):
        if sf_str_eq(<PyObject *>t[k], x):
            return 1
    if x != <PyObject *>None and not isinstance(<object>x, str):
        c.err = 1
    return 0


cdef bint add_rec(Ctx *c, int i, int rule, int64_t amount) noexcept:
    """Append an allocation (and the applied rule) to line i."""
    cdef int k = c.nrec
    cdef int cap
    cdef void *p
    if k == c.caprec:
        cap = c.caprec * 2 + 16
        p = PyMem_Realloc(c.rec_rule, cap * sizeof(int))
        if p == NULL:
            c.err = 1
            return False
        c.rec_rule = <int *>p
        p = PyMem_Realloc(c.rec_next, cap * sizeof(int))
        if p == NULL:
            c.err = 1
            return False
        c.rec_next = <int *>p
        p = PyMem_Realloc(c.rec_amount, cap * sizeof(int64_t))
        if p == NULL:
            c.err = 1
            return False
        c.rec_amount = <int64_t *>p
        c.caprec = cap
    c.rec_rule[k] = rule
    c.rec_amount[k] = amount
    c.rec_next[k] = -1
    if c.tail[i] < 0:
        c.head[i] = k
    else:
        c.rec_next[c.tail[i]] = k
    c.tail[i] = k
    c.nrec = k + 1
    return True


cdef int eligible(Ctx *c, int o, int *lines, int nl, int *out) noexcept:
    """pricing.rules.item.eligible: lines with money left whose earlier promotions all
    combine with rule o. Order kept."""
    cdef int k, i, rec, cnt = 0
    cdef bint ok
    for k in range(nl):
        i = lines[k]
        if c.net[i] <= 0:
            continue
        ok = True
        rec = c.head[i]
        while rec >= 0:
            if not compat(c.R, c.rec_rule[rec], o):
                ok = False
                break
            rec = c.rec_next[rec]
        if ok:
            out[cnt] = i
            cnt += 1
    return cnt


# --- sorting ----------------------------------------------------------------------------

cdef inline bint before(Ctx *c, int mode, int a, int b) noexcept:
    cdef i128 x, y
    if mode == BY_UNIT_DESC:
        if c.unit[a] != c.unit[b]:
            return c.unit[a] > c.unit[b]
        return a < b
    if mode == BY_UNIT_ASC:
        if c.unit[a] != c.unit[b]:
            return c.unit[a] < c.unit[b]
        return a < b
    x = <i128>c.net[a] * c.qty[b]
    y = <i128>c.net[b] * c.qty[a]
    if x != y:
        return x > y
    return a < b


cdef void sort_lines(Ctx *c, int *a, int n, int mode) noexcept:
    """Sort line indices by a total order (merge sort; insertion sort when short)."""
    cdef int i, j, v, width, lo, mid, hi, p, q, k
    cdef int *src
    cdef int *dst
    cdef int *t
    if n <= 24:
        for i in range(1, n):
            v = a[i]
            j = i - 1
            while j >= 0 and before(c, mode, v, a[j]):
                a[j + 1] = a[j]
                j -= 1
            a[j + 1] = v
        return
    src = a
    dst = c.tmp_sort
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            p = lo
            q = mid
            k = lo
            while p < mid and q < hi:
                if before(c, mode, src[q], src[p]):
                    dst[k] = src[q]
                    q += 1
                else:
                    dst[k] = src[p]
                    p += 1
                k += 1
            while p < mid:
                dst[k] = src[p]
                p += 1
                k += 1
            while q < hi:
                dst[k] = src[q]
                q += 1
                k += 1
            lo = hi
        t = src
        src = dst
        dst = t
        width *= 2
    if src != a:
        memcpy(a, src, n * sizeof(int))


# --- allocation (pricing.allocate.largest_remainder) ------------------------------------

cdef bint largest_remainder(Ctx *c, int64_t total, int64_t *w, int nw, int64_t *out) noexcept:
    """Shares of ``total`` proportional to ``w``; ties to the lower index. False (and
    c.err) where the reference raises (a non-zero amount onto zero weights)."""
    cdef i128 whole = 0, rem_k, rem_v
    cdef int64_t given = 0, left
    cdef int k, j, v
    cdef int *idx = c.tmp_sort
    cdef i128 *rems = c.tmp_r
    for k in range(nw):
        whole += w[k]
    if whole <= 0:
        if total:
            c.err = 1
            return False
        for k in range(nw):
            out[k] = 0
        return True
    if whole < SMALL and total < SMALL:  # products below 2**62: plain int64
        for k in range(nw):
            out[k] = (total * w[k]) / <int64_t>whole
            given += out[k]
        left = total - given
        if not left:
            return True
        for k in range(nw):
            rems[k] = total * w[k] - out[k] * <int64_t>whole
            idx[k] = k
    else:
        for k in range(nw):
            out[k] = <int64_t>((<i128>total * w[k]) / whole)
            given += out[k]
        left = total - given
        if not left:
            return True
        for k in range(nw):
            rems[k] = <i128>total * w[k] - <i128>out[k] * whole
            idx[k] = k
    # largest remainder first, ties to the lower index (a stable insertion sort on the
    # remainders; nw is the number of lines of one discount)
    for k in range(1, nw):
        v = idx[k]
        rem_v = rems[v]
        j = k - 1
        while j >= 0 and rems[idx[j]] < rem_v:
            idx[j + 1] = idx[j]
            j -= 1
        idx[j + 1] = v
    for k in range(left):
        out[idx[k]] += 1
    return True


# --- phases 1-2: unit prices (engine._unit_phase) ----------------------------------------

cdef int64_t unit_after(Ctx *c, int o, int64_t unit, int i) noexcept:
    """UnitRule.unit_after / MarkdownRule.unit_after."""
    cdef CRule *r = &c.R.rules[o]
    if r.has_within:
        if not c.has_expiry[i] or c.expiry[i] - c.now > r.within_ms:
            return unit
    if r.percent_bp:
        return unit - percent_of(unit, r.percent_bp)
    if r.amount_off:
        return unit - r.amount_off if unit > r.amount_off else 0
    return r.new_price if r.new_price < unit else unit


cdef int unit_phase(Ctx *c, int i, int *cands, int nc, int *ud_rule, int64_t *ud_amount,
                    int *ud_line, int nud) noexcept:
    """engine._unit_phase for line i; appends (rule, amount, line) to the unit-done list."""
    cdef int64_t start = c.base[i], best = start, after_md, after_tr, q
    cdef int mi, ti, md, tr, pick_md = -1, pick_tr = -1
    cdef int64_t pick_after = 0
    cdef bint picked = False
    cdef RS *R = c.R
    for mi in range(-1, nc):
        if mi < 0:
            md = -1
            after_md = start
        else:
            md = cands[mi]
            if R.rules[md].phase != MARKDOWN:
                continue
            after_md = unit_after(c, md, start, i)
            if after_md >= start:
                continue
            if after_md < best:
                best = after_md
                pick_md, pick_tr, pick_after, picked = md, -1, after_md, True
        for ti in range(nc):
            tr = cands[ti]
            if R.rules[tr].phase == MARKDOWN:
                continue
            if md >= 0 and not compat(R, md, tr):
                continue
            after_tr = unit_after(c, tr, after_md, i)
            if after_tr < best:
                best = after_tr
                pick_md, pick_tr, pick_after, picked = md, tr, after_md, True
    if not picked:
        return nud
    q = c.qty[i]
    c.unit[i] = best
    c.net[i] = best * q
    if pick_md >= 0:
        if not add_rec(c, i, pick_md, (start - pick_after) * q):
            return nud
        ud_rule[nud] = pick_md
        ud_amount[nud] = (start - pick_after) * q
        ud_line[nud] = i
        nud += 1
    if pick_tr >= 0:
        if not add_rec(c, i, pick_tr, (pick_after - best) * q):
            return nud
        ud_rule[nud] = pick_tr
        ud_amount[nud] = (pick_after - best) * q
        ud_line[nud] = i
        nud += 1
    return nud


# --- phases 3-5: options (pricing.rules.item / bundle / threshold / coupon) -------------

cdef inline int opt_push(Ctx *c, int cnt, int i, int64_t weight) noexcept:
    c.olines[c.opool + cnt] = i
    c.oweights[c.opool + cnt] = weight
    return cnt + 1


cdef inline int opt_done(Ctx *c, Opt *out, int o, int64_t value, int64_t times,
                         int64_t detail_num, int cnt) noexcept:
    out.rule = o
    out.value = value
    out.times = times
    out.detail_num = detail_num
    out.off = c.opool
    out.nl = cnt
    c.opool += cnt
    return 1


cdef inline int64_t free_before(int64_t x, int64_t size, int64_t buy) noexcept:
    """Units among positions [0, x) that fall on a "get" place of their set."""
    cdef int64_t r = x % size
    return (x / size) * (size - buy) + (r - buy if r > buy else 0)


cdef int opt_bxgy_same(Ctx *c, int o, int *s0, int n0, Opt *out) noexcept:
    """BuyXGetYRule._same: sets of X+Y dearest first, the cheapest Y of each discounted."""
    cdef CRule *r = &c.R.rules[o]
    cdef int *lines = c.tmp_a
    cdef int nl = eligible(c, o, s0, n0, lines)
    cdef int64_t size = r.buy_qty + r.get_qty, units = 0, sets, left, pos = 0, take, u
    cdef int64_t free = 0, value
    cdef int k, i, cnt = 0
    for k in range(nl):
        units += c.qty[lines[k]]
    sets = units / size
    if sets > r.max_sets:
        sets = r.max_sets
    if not sets:
        return 0
    left = sets * size
    sort_lines(c, lines, nl, BY_UNIT_DESC)
    for k in range(nl):
        i = lines[k]
        take = c.qty[i] if c.qty[i] < left - pos else left - pos
        u = c.unit[i]
        free += u * (free_before(pos + take, size, r.buy_qty) - free_before(pos, size, r.buy_qty))
        cnt = opt_push(c, cnt, i, u * take)
        pos += take
        if pos == left:
            break
    value = percent_of(free, r.percent_bp)
    if not value:
        return 0
    return opt_done(c, out, o, value, sets, -1, cnt)


cdef int opt_bxgy_other(Ctx *c, int o, int *s0, int n0, int *s1, int n1, Opt *out) noexcept:
    """BuyXGetYRule._other: Y of the get scope (cheapest) per X of the buy scope."""
    cdef CRule *r = &c.R.rules[o]
    cdef int *buy
    cdef int *get
    cdef int nbuy, nget, k, i, cnt = 0
    cdef int64_t bought = 0, sets, give, free = 0, take, given, need, value
    if n1 == 0:
        return 0
    buy = c.tmp_a
    get = c.tmp_b
    nbuy = eligible(c, o, s0, n0, buy)
    nget = eligible(c, o, s1, n1, get)
    for k in range(nbuy):
        bought += c.qty[buy[k]]
    sets = bought / r.buy_qty
    if sets > r.max_sets:
        sets = r.max_sets
    if not sets or not nget:
        return 0
    give = sets * r.get_qty
    sort_lines(c, get, nget, BY_UNIT_ASC)
    for k in range(nget):
        i = get[k]
        take = c.qty[i] if c.qty[i] < give else give
        free += c.unit[i] * take
        cnt = opt_push(c, cnt, i, c.unit[i] * take)
        give -= take
        if not give:
            break
    given = sets * r.get_qty - give
    sets = (given + r.get_qty - 1) / r.get_qty
    need = sets * r.buy_qty
    sort_lines(c, buy, nbuy, BY_UNIT_DESC)
    for k in range(nbuy):
        i = buy[k]
        take = c.qty[i] if c.qty[i] < need else need
        cnt = opt_push(c, cnt, i, c.unit[i] * take)
        need -= take
        if not need:
            break
    value = percent_of(free, r.percent_bp)
    if not value:
        return 0
    return opt_done(c, out, o, value, sets, -1, cnt)


cdef int opt_gift(Ctx *c, int o, int *s0, int n0, int *s1, int n1, Opt *out) noexcept:
    """GiftRule.option: the trigger is a condition; the gift units are discounted."""
    cdef CRule *r = &c.R.rules[o]
    cdef int64_t units = 0, spend = 0, times = UNBOUNDED, give, value = 0, take
    cdef int k, i, nget, cnt = 0
    cdef int *get
    if n1 == 0 or n0 == 0:
        return 0
    for k in range(n0):
        units += c.qty[s0[k]]
        spend += c.net[s0[k]]
    if r.min_qty and units / r.min_qty < times:
        times = units / r.min_qty
    if r.min_spend and spend / r.min_spend < times:
        times = spend / r.min_spend
    if not r.repeat and times > 1:
        times = 1
    if not times:
        return 0
    give = times * r.gift_qty
    get = c.tmp_a
    nget = eligible(c, o, s1, n1, get)
    sort_lines(c, get, nget, BY_UNIT_ASC)
    for k in range(nget):
        i = get[k]
        take = c.qty[i] if c.qty[i] < give else give
        value += c.unit[i] * take
        cnt = opt_push(c, cnt, i, c.unit[i] * take)
        give -= take
        if not give:
            break
    if not value:
        return 0
    return opt_done(c, out, o, value, times, -1, cnt)


cdef int opt_bundle(Ctx *c, int o, int *slot_start, int *slot_len, int *sorted_lines,
                    Opt *out) noexcept:
    """BundleRule.option: components filled dearest first; sets formed while cheaper."""
    cdef CRule *r = &c.R.rules[o]
    cdef int j, k, i, nl, nruns, cnt = 0, key
    cdef int64_t sets = r.max_sets, size, want, units, avail, take, together, value = 0
    cdef int64_t formed = 0, need, chunk
    cdef int *lines = c.tmp_a
    cdef int *run_off = c.tmp_b  # per component: first run (max_ncomp + 1 entries)
    cdef int *cur_run
    cdef int64_t *cur_used
    cdef int n = c.n
    c.stamp_now += 1
    nruns = 0
    for j in range(r.ncomp):
        size = c.R.sizes[r.comp_off + j]
        want = sets * size
        units = 0
        run_off[j] = nruns
        key = r.slot_base + j
        nl = eligible(c, o, sorted_lines + slot_start[key], slot_len[key], lines)
        sort_lines(c, lines, nl, BY_UNIT_DESC)
        for k in range(nl):
            i = lines[k]
            if c.stamp[i] != c.stamp_now:
                c.stamp[i] = c.stamp_now
                c.left[i] = c.qty[i]
            avail = c.left[i]
            take = avail if avail < want - units else want - units
            if take:
                c.runs_line[nruns] = i
                c.runs_cnt[nruns] = take
                nruns += 1
                units += take
                c.left[i] = avail - take
            if units == want:
                break
        if units / size < sets:
            sets = units / size
        if not sets:
            return 0
    run_off[r.ncomp] = nruns
    # walk the sets: per component a cursor (run, units of it used)
    cur_run = <int *>(c.tmp_w2)  # reuse: ncomp cursors fit (n >= 1 words of 8 bytes)
    cur_used = c.tmp_w
    for j in range(r.ncomp):
        cur_run[j] = run_off[j]
        cur_used[j] = 0
    for k in range(sets):
        together = 0
        for j in range(r.ncomp):
            need = c.R.sizes[r.comp_off + j]
            while need:
                chunk = c.runs_cnt[cur_run[j]] - cur_used[j]
                if chunk > need:
                    chunk = need
                together += c.unit[c.runs_line[cur_run[j]]] * chunk
                cur_used[j] += chunk
                need -= chunk
                if cur_used[j] == c.runs_cnt[cur_run[j]]:
                    cur_run[j] += 1
                    cur_used[j] = 0
        if together <= r.price:
            break  # units are dearest first: later sets are no cheaper
        value += together - r.price
        formed += 1
    if not formed:
        return 0
    # weights: every unit inside the formed sets, per line, lines in index order
    for i in range(n):
        c.flag[i] = 0
        c.left[i] = 0
    c.stamp_now += 1  # c.left now holds weights; stamps above are stale on purpose
    for j in range(r.ncomp):
        need = formed * c.R.sizes[r.comp_off + j]
        k = run_off[j]
        while need and k < run_off[j + 1]:
            chunk = c.runs_cnt[k] if c.runs_cnt[k] < need else need
            i = c.runs_line[k]
            c.flag[i] = 1
            c.left[i] += c.unit[i] * chunk
            need -= chunk
            k += 1
    for i in range(n):
        if c.flag[i]:
            cnt = opt_push(c, cnt, i, c.left[i])
    return opt_done(c, out, o, value, formed, -1, cnt)


cdef int spend_option(Ctx *c, int o, int *lines, int nl, int64_t max_times, Opt *out) noexcept:
    """pricing.rules.threshold.spend_option."""
    cdef CRule *r = &c.R.rules[o]
    cdef int64_t subtotal = 0, times, value, detail
    cdef i128 off
    cdef int k, cnt = 0
    for k in range(nl):
        subtotal += c.net[lines[k]]
    if not subtotal or subtotal < r.min_spend:
        return 0
    if r.percent_bp:
        times = 1
        value = percent_of(subtotal, r.percent_bp)
        detail = subtotal
    else:
        times = 1
        if r.min_spend:
            times = subtotal / r.min_spend
            if times > max_times:
                times = max_times
        off = <i128>r.amount_off * times
        value = subtotal if off > subtotal else <int64_t>off
        detail = times
    if not value:
        return 0
    for k in range(nl):
        cnt = opt_push(c, cnt, lines[k], c.net[lines[k]])
    return opt_done(c, out, o, value, times, detail, cnt)


cdef int opt_threshold(Ctx *c, int o, int *s0, int n0, Opt *out) noexcept:
    """ThresholdRule.option."""
    cdef CRule *r = &c.R.rules[o]
    cdef int64_t spend = 0
    cdef int k, nl
    if r.min_spend:
        for k in range(n0):
            spend += c.net[s0[k]]
        if spend < r.min_spend:
            return 0
    nl = eligible(c, o, s0, n0, c.tmp_a)
    return spend_option(c, o, c.tmp_a, nl, r.max_sets, out)


cdef inline i128 gcd128(i128 a, i128 b) noexcept:
    cdef i128 t
    while b:
        t = a % b
        a = b
        b = t
    return a


cdef int opt_coupon_item(Ctx *c, int o, int *lines_in, int nin, Opt *out) noexcept:
    """CouponRule._item, with the Fractions over one common denominator (exact)."""
    cdef CRule *r = &c.R.rules[o]
    cdef int *lines = c.tmp_a
    cdef int nl = eligible(c, o, lines_in, nin, lines)
    cdef int64_t spend = 0, left = r.max_units, take, units = 0, value, q
    cdef int k, i, used = 0, cnt = 0
    cdef i128 lcm = 1, g, s, total = 0, den, big = BIG
    cdef i128 *parts = c.tmp_r
    for k in range(nl):
        spend += c.net[lines[k]]
    if spend < r.min_spend:
        return 0
    sort_lines(c, lines, nl, BY_UNIT_NET_DESC)
    for k in range(nl):
        i = lines[k]
        take = c.qty[i] if c.qty[i] < left else left
        c.tmp_w[used] = take
        used += 1
        left -= take
        if not left:
            break
    if not used:
        return 0
    for k in range(used):
        q = c.qty[lines[k]]
        g = gcd128(lcm, q)
        lcm = lcm / g * q
        if lcm > 1048576:  # 2**20: keeps every scaled part below 2**110
            c.err = 1
            return 0
    for k in range(used):
        i = lines[k]
        take = c.tmp_w[k]
        if r.percent_bp:  # unit_net * k * bp / 10_000, scaled by lcm * 10_000
            s = <i128>c.net[i] * take * r.percent_bp * (lcm / c.qty[i])
        elif <i128>r.amount_off * c.qty[i] <= c.net[i]:  # min(amount, unit_net) * k
            s = <i128>r.amount_off * take * lcm
        else:
            s = <i128>c.net[i] * take * (lcm / c.qty[i])
        parts[k] = s
        total += s
        units += take
    den = lcm * BP if r.percent_bp else lcm
    value = <int64_t>((2 * total + den) / (2 * den))  # round_half_up(off)
    if not value:
        return 0
    g = 0
    for k in range(used):
        g = gcd128(parts[k], g) if g else parts[k]
    for k in range(used):
        s = parts[k] / g  # proportional to the reference's int(p * scale)
        if s > big:
            c.err = 1
            return 0
        cnt = opt_push(c, cnt, lines[k], <int64_t>s)
    return opt_done(c, out, o, value, units, units, cnt)


# --- best-price search (pricing.search.choose / _search) --------------------------------

cdef struct Search:
    int W
    uint64_t *conf
    int64_t *values
    i128 best_value
    uint64_t *best
    int64_t nodes
    int *taken
    int ntaken
    uint64_t *stack


cdef void walk(Search *s, int depth, i128 value) noexcept:
    cdef int W = s.W, w, k = -1, t
    cdef uint64_t *cands = s.stack + <Py_ssize_t>depth * W
    cdef uint64_t *child = cands + W
    cdef uint64_t bits, low
    cdef i128 bound
    cdef bint empty = True
    s.nodes += 1
    for w in range(W):
        if cands[w]:
            empty = False
            break
    if empty:
        if value > s.best_value:
            s.best_value = value
            memset(s.best, 0, W * sizeof(uint64_t))
            for t in range(s.ntaken):
                s.best[s.taken[t] >> 6] |= (<uint64_t>1) << (s.taken[t] & 63)
        return
    bound = value
    for w in range(W):
        bits = cands[w]
        while bits:
            if k < 0:
                k = w * 64 + sf_ctz(bits)
            bound += s.values[w * 64 + sf_ctz(bits)]
            bits &= bits - 1
    if bound <= s.best_value or s.nodes > MAX_NODES:
        return
    for w in range(W):
        child[w] = cands[w] & ~s.conf[<Py_ssize_t>k * W + w]
    child[k >> 6] &= ~((<uint64_t>1) << (k & 63))
    s.taken[s.ntaken] = k
    s.ntaken += 1
    walk(s, depth + 1, value + s.values[k])
    s.ntaken -= 1
    for w in range(W):
        child[w] = cands[w]
    child[k >> 6] &= ~((<uint64_t>1) << (k & 63))
    walk(s, depth + 1, value)


cdef int choose(Ctx *c, Opt *opts, int m, bint stack, int *chosen) noexcept:
    """The best conflict-free subset (indices into opts, by rule ordinal); clears c.exact
    when a component ran out of search budget."""
    cdef int a, b, k, v, j, start, low, nch = 0, Wm, Wl = c.W, w
    cdef int *order
    cdef uint64_t *conf
    cdef uint64_t *seen
    cdef uint64_t *comp
    cdef uint64_t *frontier
    cdef uint64_t *ma
    cdef uint64_t *mb
    cdef uint64_t new, bits
    cdef bint any_conf = False, share, single
    cdef Search s
    cdef void *block
    if m <= 1:
        if m == 1:
            chosen[0] = 0
        return m
    Wm = (m + 63) >> 6
    block = PyMem_Malloc(m * sizeof(int) + (m * Wm + 3 * Wm + (m + 2) * Wm + Wm) * sizeof(uint64_t)
                         + m * sizeof(int64_t) + (m + 1) * sizeof(int))
    if block == NULL:
        c.err = 1
        return 0
    conf = <uint64_t *>block
    seen = conf + m * Wm
    comp = seen + Wm
    frontier = comp + Wm
    s.stack = frontier + Wm
    s.best = s.stack + (m + 2) * Wm
    s.values = <int64_t *>(s.best + Wm)
    s.taken = <int *>(s.values + m)
    order = s.taken + m + 1
    memset(conf, 0, (m * Wm + 3 * Wm) * sizeof(uint64_t))
    # order: by value, descending, stable (ties keep the options' order)
    for k in range(m):
        order[k] = k
    for k in range(1, m):
        v = order[k]
        j = k - 1
        while j >= 0 and opts[order[j]].value < opts[v].value:
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = v
    for a in range(m):
        ma = c.omask + <Py_ssize_t>order[a] * Wl
        for b in range(a + 1, m):
            mb = c.omask + <Py_ssize_t>order[b] * Wl
            share = False
            for w in range(Wl):
                if ma[w] & mb[w]:
                    share = True
                    break
            if share and (not stack or not compat(c.R, opts[order[a]].rule, opts[order[b]].rule)):
                conf[a * Wm + (b >> 6)] |= (<uint64_t>1) << (b & 63)
                conf[b * Wm + (a >> 6)] |= (<uint64_t>1) << (a & 63)
                any_conf = True
    if not any_conf:
        for k in range(m):
            chosen[k] = k
        nch = m
    else:
        s.W = Wm
        s.conf = conf
        for k in range(m):
            s.values[k] = opts[order[k]].value
        for start in range(m):
            if (seen[start >> 6] >> (start & 63)) & 1:
                continue
            memset(comp, 0, 2 * Wm * sizeof(uint64_t))
            comp[start >> 6] |= (<uint64_t>1) << (start & 63)
            frontier[start >> 6] |= (<uint64_t>1) << (start & 63)
            while True:
                low = -1
                for w in range(Wm):
                    if frontier[w]:
                        low = w * 64 + sf_ctz(frontier[w])
                        break
                if low < 0:
                    break
                frontier[low >> 6] &= ~((<uint64_t>1) << (low & 63))
                for w in range(Wm):
                    new = conf[low * Wm + w] & ~comp[w]
                    comp[w] |= new
                    frontier[w] |= new
            single = True
            k = 0
            for w in range(Wm):
                seen[w] |= comp[w]
                k += sf_popcount(comp[w])
            if k == 1:
                chosen[nch] = order[start]
                nch += 1
                continue
            memcpy(s.stack, comp, Wm * sizeof(uint64_t))
            memset(s.best, 0, Wm * sizeof(uint64_t))
            s.best_value = -1
            s.nodes = 0
            s.ntaken = 0
            walk(&s, 0, 0)
            if s.nodes > MAX_NODES:
                c.exact = False
            for w in range(Wm):
                bits = s.best[w]
                while bits:
                    chosen[nch] = order[w * 64 + sf_ctz(bits)]
                    nch += 1
                    bits &= bits - 1
    # by rule ordinal (the order discounts are allocated in)
    for k in range(1, nch):
        v = chosen[k]
        j = k - 1
        while j >= 0 and opts[chosen[j]].rule > opts[v].rule:
            chosen[j + 1] = chosen[j]
            j -= 1
        chosen[j + 1] = v
    PyMem_Free(block)
    return nch


# --- applying chosen options (engine._apply) --------------------------------------------

cdef int apply_options(Ctx *c, Opt *opts, int *chosen, int nch, list explain,
                       tuple line_ids) except -1:
    cdef int k, t, i, nl
    cdef Opt *opt
    cdef int64_t value, room_sum
    cdef int64_t *w
    cdef int64_t *shares = c.tmp_w
    cdef int *lines
    cdef bint resplit
    cdef CRule *r
    for k in range(nch):
        opt = &opts[chosen[k]]
        value = opt.value
        lines = c.olines + opt.off
        nl = opt.nl
        w = c.oweights + opt.off
        if not largest_remainder(c, value, w, nl, shares):
            return 0
        resplit = False
        for t in range(nl):
            if shares[t] > c.net[lines[t]]:
                resplit = True
                break
        if resplit:  # stacked in one phase and the first took more: re-split
            room_sum = 0
            for t in range(nl):
                c.tmp_w2[t] = c.net[lines[t]]
                room_sum += c.tmp_w2[t]
            if room_sum < value:
                value = room_sum
            if not largest_remainder(c, value, c.tmp_w2, nl, shares):
                return 0
        for t in range(nl):
            if shares[t]:
                i = lines[t]
                c.net[i] -= shares[t]
                if not add_rec(c, i, opt.rule, shares[t]):
                    return 0
        r = &c.R.rules[opt.rule]
        ids = ids_of(line_ids, c.n, lines, nl)
        if opt.detail_num >= 0:
            detail = <object>r.detail + str(opt.detail_num)
        else:
            detail = <object>r.detail
        explain.append(applied(<object>r.id, <object>r.kind_name, <object>r.phase_name,
                               value, 0, opt.times, ids, detail))
    return 0


# --- building the output ----------------------------------------------------------------

cdef inline void put_borrowed(object tup, Py_ssize_t k, PyObject *value) noexcept:
    Py_INCREF(<object>value)
    PyTuple_SET_ITEM(tup, k, <object>value)


cdef inline void put(object tup, Py_ssize_t k, object value) noexcept:
    Py_INCREF(value)
    PyTuple_SET_ITEM(tup, k, value)


cdef object applied(object pid, object kind, object phase, int64_t amount, int64_t points,
                    int64_t times, object ids, object detail):
    cdef object a = sf_alloc(_Applied, 8)
    put(a, 0, pid)
    put(a, 1, kind)
    put(a, 2, phase)
    put(a, 3, amount)
    put(a, 4, points)
    put(a, 5, times)
    put(a, 6, ids)
    put(a, 7, detail)
    return a


cdef object allocation(object pid, object phase, int64_t amount):
    cdef object a = sf_alloc(_Allocation, 3)
    put(a, 0, pid)
    put(a, 1, phase)
    put(a, 2, amount)
    return a


cdef object ids_of(tuple line_ids, int n, int *lines, int cnt):
    """The ids of ``lines``: the basket's own ``line_ids`` tuple when they are all of its
    lines in order (an applied promotion's ids are often every line: no new tuple)."""
    cdef int t
    cdef bint whole = cnt == n
    if whole:
        for t in range(cnt):
            if lines[t] != t:
                whole = False
                break
        if whole:
            return line_ids
    ids = PyTuple_New(cnt)
    for t in range(cnt):
        put_borrowed(ids, t, PyTuple_GET_ITEM(line_ids, lines[t]))
    return ids


cdef object ids_where(tuple line_ids, int64_t *shares, int n):
    """_tender_applied: the lines that got a share."""
    cdef int i, cnt = 0, k = 0
    for i in range(n):
        if shares[i]:
            cnt += 1
    if cnt == n:
        return line_ids  # every line: the basket's own tuple
    ids = PyTuple_New(cnt)
    for i in range(n):
        if shares[i]:
            put(ids, k, line_ids[i])
            k += 1
    return ids


# --- price() ----------------------------------------------------------------------------

cdef object _Ruleset = None
cdef object _compile = None
cdef object _python_price = None


cdef _bind():
    global _Ruleset, _compile, _python_price
    from pricing.engine import price as python_price
    from pricing.ruleset import Ruleset, compile

    _Ruleset, _compile, _python_price = Ruleset, compile, python_price


def build(ruleset):
    """The C form of a compiled ``Ruleset`` (``Ruleset.native``)."""
    return NativeRuleset(ruleset)


def price(basket, catalog, promotions, member, now, store):
    """``pricing.engine.price``, computed in C: same arguments, same result, same errors."""
    if _Ruleset is None:
        _bind()
    rs = promotions if isinstance(promotions, _Ruleset) else _compile(promotions)
    nat = rs.native
    if nat is None:
        nat = rs.native = NativeRuleset(rs)
    cdef NativeRuleset native = <NativeRuleset?>nat
    if native.usable:
        result = _price(native, basket, catalog, rs, member, now, store)
        if result is not None:
            return result
    native.fallbacks += 1
    return _python_price(basket, catalog, rs, member, now, store)


cdef inline bint _eq(object a, object b) noexcept:
    """Equal exact str (what the reference's ``==`` means for pydantic str fields)."""
    return sf_str_eq(<PyObject *>a, <PyObject *>b)


cdef inline bint _i64(object v, int64_t lo, int64_t hi, int64_t *out) noexcept:
    return sf_int(<PyObject *>v, lo, hi, out)


cdef object _price(NativeRuleset nat, basket, catalog, rs, member, now_o, store):
    """None when the Python engine must price this basket (see the module docstring)."""
    cdef Ctx c
    cdef void *block = NULL
    cdef Opt *opts = NULL
    cdef int *ud = NULL
    memset(&c, 0, sizeof(Ctx))
    try:
        return _run(&c, nat, basket, catalog, rs, member, now_o, store, &block, &opts, &ud)
    finally:
        PyMem_Free(block)
        PyMem_Free(opts)
        PyMem_Free(ud)
        PyMem_Free(c.rec_rule)
        PyMem_Free(c.rec_next)
        PyMem_Free(c.rec_amount)
        PyMem_Free(c.olines)
        PyMem_Free(c.oweights)
        PyMem_Free(c.omask)


cdef bint _grow_pool(Ctx *c, int need) noexcept:
    """Room for ``need`` more option lines (and one more mask) in the phase's pool."""
    cdef void *p
    cdef int cap
    if c.opool + need <= c.capool:
        return True
    cap = c.capool * 2 + need + 64
    p = PyMem_Realloc(c.olines, cap * sizeof(int))
    if p == NULL:
        return False
    c.olines = <int *>p
    p = PyMem_Realloc(c.oweights, cap * sizeof(int64_t))
    if p == NULL:
        return False
    c.oweights = <int64_t *>p
    c.capool = cap
    return True


cdef bint _line_before(PyObject **skus, PyObject **ids, int a, int b) except -1:
    """(sku, line id) of line a sorts before that of line b."""
    cdef int x = sf_str_cmp(skus[a], skus[b])
    if x:
        return x < 0
    return sf_str_cmp(ids[a], ids[b]) < 0


cdef bint _coupon_matches(CRule *r, object sku, object cat) except -1:
    """Rule.matches for a coupon (not indexed: found by code)."""
    if sku in <frozenset>r.excl:
        return False
    return r.everything or sku in <frozenset>r.skus or cat in <frozenset>r.cats


cdef bint _masks(Ctx *c, Opt *opts, int m) noexcept:
    """Each option's lines as a bitset (Option.mask)."""
    cdef int k, t, i, W = c.W
    cdef void *p = PyMem_Realloc(c.omask, <Py_ssize_t>m * W * sizeof(uint64_t))
    if p == NULL:
        return False
    c.omask = <uint64_t *>p
    memset(c.omask, 0, <Py_ssize_t>m * W * sizeof(uint64_t))
    for k in range(m):
        for t in range(opts[k].nl):
            i = c.olines[opts[k].off + t]
            c.omask[<Py_ssize_t>k * W + (i >> 6)] |= (<uint64_t>1) << (i & 63)
    return True


cdef int _option(Ctx *c, int o, int *slot_start, int *slot_len, int *sorted_lines,
                 Opt *out) noexcept:
    """OptionRule.option(st, hits[o]) for one item or threshold rule."""
    cdef CRule *r = &c.R.rules[o]
    cdef int key = r.slot_base
    cdef int *s0 = sorted_lines + slot_start[key]
    cdef int n0 = slot_len[key]
    cdef int *s1 = NULL
    cdef int n1 = 0
    if r.nslots > 1:
        s1 = sorted_lines + slot_start[key + 1]
        n1 = slot_len[key + 1]
    if r.kind == K_BXGY:
        return opt_bxgy_same(c, o, s0, n0, out)
    if r.kind == K_BXGY_OTHER:
        return opt_bxgy_other(c, o, s0, n0, s1, n1, out)
    if r.kind == K_BUNDLE:
        return opt_bundle(c, o, slot_start, slot_len, sorted_lines, out)
    if r.kind == K_GIFT:
        return opt_gift(c, o, s0, n0, s1, n1, out)
    if r.kind == K_THRESHOLD:
        return opt_threshold(c, o, s0, n0, out)
    c.err = 1  # an indexed rule of a kind with no option: not the reference's ruleset
    return 0


cdef int _explain_units(Ctx *c, list explain, tuple line_ids, int *ud_rule,
                        int64_t *ud_amount, int *ud_line, int nud) except -1:
    """One Applied per unit rule, by ordinal: amount, units and lines summed."""
    cdef int k, j, v, start, o
    cdef int *idx = c.tmp_sort
    cdef int64_t amount, count
    cdef bint whole
    cdef CRule *r
    for k in range(nud):
        idx[k] = k
    for k in range(1, nud):  # stable: lines stay in order within a rule
        v = idx[k]
        j = k - 1
        while j >= 0 and ud_rule[idx[j]] > ud_rule[v]:
            idx[j + 1] = idx[j]
            j -= 1
        idx[j + 1] = v
    start = 0
    while start < nud:
        o = ud_rule[idx[start]]
        j = start
        amount = 0
        count = 0
        while j < nud and ud_rule[idx[j]] == o:
            amount += ud_amount[idx[j]]
            count += c.qty[ud_line[idx[j]]]
            j += 1
        whole = j - start == c.n
        if whole:
            for k in range(start, j):
                if ud_line[idx[k]] != k - start:
                    whole = False
                    break
        if whole:
            ids = line_ids  # every line, in order: the basket's own tuple
        else:
            ids = PyTuple_New(j - start)
            for k in range(start, j):
                put(ids, k - start, line_ids[ud_line[idx[k]]])
        r = &c.R.rules[o]
        explain.append(applied(<object>r.id, <object>r.kind_name, <object>r.phase_name,
                               amount, 0, count, ids, _EMPTY))
        start = j
    return 0


cdef int _earn(Ctx *c, PyObject **ents, list explain, tuple line_ids, int64_t *pv,
               int64_t *earned, int64_t *ebase, int *best_k, int64_t *best_pts) except -1:
    """pricing.rules.tender.earn_points: per group the best active rule, by ordinal."""
    cdef RS *R = c.R
    cdef int k, i, j, o, nbest = 0, cnt, v
    cdef int64_t s, pts
    cdef i128 wide
    cdef bint any_active = False
    cdef CRule *r
    cdef int *lines = c.tmp_a
    for k in range(R.n_earn):
        if active(c, R.earn[k]):
            any_active = True
    if not any_active:
        return 0
    for i in range(c.n):
        ebase[i] = c.net[i] - pv[i] if c.earns[i] else 0
    for k in range(R.n_earn):
        o = R.earn[k]
        if not active(c, o):
            continue
        r = &R.rules[o]
        s = 0
        for i in range(c.n):
            if ebase[i] > 0 and (<LineEntry>ents[i]).earn_match[k]:
                s += ebase[i]
        wide = <i128>s * r.points / r.per_minor
        if wide > BIG:
            c.err = 1
            return 0
        pts = <int64_t>wide
        if not pts:
            continue
        for j in range(nbest):
            if R.rules[R.earn[best_k[j]]].group == r.group:
                if pts > best_pts[j]:
                    best_k[j] = k
                    best_pts[j] = pts
                break
        else:
            best_k[nbest] = k
            best_pts[nbest] = pts
            nbest += 1
    for j in range(1, nbest):  # by ordinal (the earn rules are in ordinal order)
        v = best_k[j]
        pts = best_pts[j]
        i = j - 1
        while i >= 0 and best_k[i] > v:
            best_k[i + 1] = best_k[i]
            best_pts[i + 1] = best_pts[i]
            i -= 1
        best_k[i + 1] = v
        best_pts[i + 1] = pts
    for j in range(nbest):
        k = best_k[j]
        r = &R.rules[R.earn[k]]
        cnt = 0
        for i in range(c.n):
            if ebase[i] > 0 and (<LineEntry>ents[i]).earn_match[k]:
                lines[cnt] = i
                c.tmp_w2[cnt] = ebase[i]
                cnt += 1
        if not largest_remainder(c, best_pts[j], c.tmp_w2, cnt, c.tmp_w):
            return 0
        for i in range(cnt):
            earned[lines[i]] += c.tmp_w[i]
        ids = ids_of(line_ids, c.n, lines, cnt)
        explain.append(applied(<object>r.id, <object>r.kind_name, _TENDER, 0, best_pts[j], 1,
                               ids, <object>r.detail))
    return 0


cdef PyObject *_line_entry(NativeRuleset nat, rs, PyObject *sku_p, PyObject *item_p,
                           PyObject *x) except? NULL:
    """The line entry of a sku (borrowed; ``nat.entries`` holds it) for catalog item
    ``item_p``, refreshed from the item when it is not the one ``x`` was read from. NULL:
    the Python engine must price the basket."""
    cdef PyObject *d
    cdef PyObject *cat_p
    cdef PyObject *y
    cdef PyObject *x2
    cdef int64_t v
    cdef LineEntry e
    if x != NULL and <PyObject *>(<LineEntry>x).item == item_p:
        return x
    d = sf_dict(item_p)
    if d == NULL:
        return NULL
    cat_p = sf_get(d, F_CATEGORY)
    y = sf_get(d, F_PRICE)
    if cat_p == NULL or not sf_is_str(cat_p) or y == NULL:
        return NULL
    if not sf_int(y, 0, MONEY_MAX, &v):
        return NULL
    if x == NULL or not sf_str_eq(<PyObject *>(<LineEntry>x).category, cat_p):
        eo = nat._entry(rs, <object>sku_p, <object>cat_p)
        nat.entries[<object>sku_p] = eo
        x = <PyObject *>eo
    e = <LineEntry>x
    x2 = sf_get(d, F_EARNS)
    if x2 == NULL:
        return NULL
    e.price = v
    e.price_o = <object>y if type(<object>y) is int else v
    e.earns = x2 == <PyObject *>True or (x2 != <PyObject *>False and bool(<object>x2))
    e.item = <object>item_p
    return x


cdef object _run(Ctx *c, NativeRuleset nat, basket, catalog, rs, member, now_o, store,
                 void **blockp, Opt **optsp, int **udp):
    cdef RS *R = &nat.rs
    cdef int n, i, k, j, o, key, nr = R.nrules, nslots, cnt, m, nch, cap_opts, nunits
    cdef int phase, nc = R.max_ncomp
    cdef int64_t now, offset, local, days, z, era, doe, yoe, doy, mp, v
    cdef int64_t requested, balance, total, subtotal, sv_total = 0, pv_total = 0, pts_used = 0
    cdef int64_t cap_, blocks, points, earned_total
    cdef i128 wide
    cdef Py_ssize_t size, n2
    cdef char *mem
    cdef LineEntry e
    cdef PyObject **ents
    cdef PyObject *h
    cdef PyObject *cd
    cdef int *order
    cdef int *slot_count
    cdef int *slot_start
    cdef int *sorted_lines
    cdef int *trip_key
    cdef int *trip_line
    cdef int ntrip = 0, cap_trip
    cdef int *ucands
    cdef int *uoff
    cdef int *ucnt
    cdef int nuc = 0
    cdef int *ud_rule
    cdef int *ud_line
    cdef int64_t *ud_amount
    cdef int nud = 0
    cdef unsigned char *hit
    cdef int *hits
    cdef int nhits = 0
    cdef Opt *opts
    cdef int *chosen
    cdef int64_t *sv
    cdef int64_t *pv
    cdef int64_t *ptsl
    cdef int64_t *earned
    cdef int64_t *ebase
    cdef int64_t *best_pts
    cdef int *best_k
    cdef CRule *r
    cdef PyObject *d
    cdef PyObject *x
    cdef PyObject *y
    cdef PyObject *sku_p
    cdef PyObject *item_p
    cdef PyObject *cat_p
    cdef PyObject *x2
    cdef uint64_t items_tag
    cdef PyObject *line_names[5]
    cdef PyObject *lf[5]
    cdef tuple line_ids, ent_keep
    # the lines' fields, borrowed: the frozen lines (held by the basket, which the caller
    # holds for the call) own them; no scratch tuples to allocate, fill and free
    cdef PyObject **raw_ids
    cdef PyObject **raw_skus
    cdef PyObject **raw_qty
    cdef PyObject **raw_price
    cdef PyObject **skus
    cdef PyObject **qty_o
    cdef PyObject **base_o  # the line's unit_price, or its entry's price_o (ent_keep)
    cdef dict entries

    # the currency checks, in the reference's order; a mismatch is the reference's error
    cur = sf_field(basket, F_CURRENCY)
    if not _eq(sf_field(catalog, F_CURRENCY), cur):
        return None
    if not _eq(rs.currency, cur):
        return None
    if not _eq(sf_field(store, F_CURRENCY), cur):
        return None
    if member is not None and not _eq(sf_field(member, F_CURRENCY), cur):
        return None

    # the clock (State.__init__): local days, ISO weekday, minute of day, day of month
    if not _i64(now_o, -TIME_MAX, TIME_MAX, &now):
        return None
    if not _i64(sf_field(store, F_OFFSET), -100000, 100000, &offset):
        return None
    c.now = now
    local = now + offset * 60000
    days = floordiv(local, DAY_MS)
    if days + EPOCH_ORDINAL < 1 or days + EPOCH_ORDINAL > MAX_ORDINAL:
        return None  # outside datetime's range: the reference decides what happens
    c.weekday = (days + 3) - floordiv(days + 3, 7) * 7 + 1
    c.minute = (local - days * DAY_MS) / 60000
    z = days + 719468  # civil_from_days (H. Hinnant): the day of the month
    era = floordiv(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    mp = (5 * doy + 2) / 153
    c.month_day = doy - (153 * mp + 2) / 5 + 1
    store_id = sf_field(store, F_ID)
    c.store_id = <PyObject *>store_id
    tier = None
    if member is not None:
        c.has_member = True
        tier = sf_field(member, F_TIER)
    c.tier = <PyObject *>tier

    lines_t = sf_field(basket, F_LINES)
    if type(lines_t) is not tuple:
        return None
    n = len(lines_t)
    if n > LINES_MAX:
        return None
    c.n = n
    c.W = (n + 63) >> 6 if n else 1
    c.R = R
    nslots = R.total_slots
    n2 = 2 * n + nc + 2  # scratch that holds an option's lines (at most 2n) or cursors

    # one block for the per-call arrays (i128 first: 16-byte alignment)
    size = (
        n2 * sizeof(i128)
        + (11 * n + 3 * n2 + nc * n) * sizeof(int64_t)
        + 8 * n * sizeof(PyObject *)
        + (10 * n + 2 * n2 + nc * n + 2 * nslots + 2 + nr) * sizeof(int)
        + 2 * n + 2 * nr + 16
    )
    blockp[0] = _alloc(size)
    mem = <char *>blockp[0]
    c.tmp_r = <i128 *>mem; mem += n2 * sizeof(i128)
    c.qty = <int64_t *>mem; mem += n * sizeof(int64_t)
    c.base = <int64_t *>mem; mem += n * sizeof(int64_t)
    c.unit = <int64_t *>mem; mem += n * sizeof(int64_t)
    c.net = <int64_t *>mem; mem += n * sizeof(int64_t)
    c.expiry = <int64_t *>mem; mem += n * sizeof(int64_t)
    c.left = <int64_t *>mem; mem += n * sizeof(int64_t)
    sv = <int64_t *>mem; mem += n * sizeof(int64_t)
    pv = <int64_t *>mem; mem += n * sizeof(int64_t)
    ptsl = <int64_t *>mem; mem += n * sizeof(int64_t)
    earned = <int64_t *>mem; mem += n * sizeof(int64_t)
    ebase = <int64_t *>mem; mem += n * sizeof(int64_t)
    c.tmp_w = <int64_t *>mem; mem += n2 * sizeof(int64_t)
    c.tmp_w2 = <int64_t *>mem; mem += n2 * sizeof(int64_t)
    c.runs_cnt = <int64_t *>mem; mem += nc * n * sizeof(int64_t)
    best_pts = <int64_t *>mem; mem += n2 * sizeof(int64_t)
    ents = <PyObject **>mem; mem += n * sizeof(PyObject *)
    raw_ids = <PyObject **>mem; mem += n * sizeof(PyObject *)
    raw_skus = <PyObject **>mem; mem += n * sizeof(PyObject *)
    raw_qty = <PyObject **>mem; mem += n * sizeof(PyObject *)
    raw_price = <PyObject **>mem; mem += n * sizeof(PyObject *)
    skus = <PyObject **>mem; mem += n * sizeof(PyObject *)
    qty_o = <PyObject **>mem; mem += n * sizeof(PyObject *)
    base_o = <PyObject **>mem; mem += n * sizeof(PyObject *)
    c.head = <int *>mem; mem += n * sizeof(int)
    c.tail = <int *>mem; mem += n * sizeof(int)
    c.tmp_a = <int *>mem; mem += 2 * n * sizeof(int)
    c.tmp_sort = <int *>mem; mem += 2 * n * sizeof(int)
    c.stamp = <int *>mem; mem += n * sizeof(int)
    order = <int *>mem; mem += n * sizeof(int)
    uoff = <int *>mem; mem += n * sizeof(int)
    ucnt = <int *>mem; mem += n * sizeof(int)
    c.tmp_b = <int *>mem; mem += n2 * sizeof(int)
    best_k = <int *>mem; mem += n2 * sizeof(int)
    c.runs_line = <int *>mem; mem += nc * n * sizeof(int)
    slot_count = <int *>mem; mem += (nslots + 1) * sizeof(int)
    slot_start = <int *>mem; mem += (nslots + 1) * sizeof(int)
    hits = <int *>mem; mem += nr * sizeof(int)
    c.has_expiry = <unsigned char *>mem; mem += n
    c.earns = <unsigned char *>mem; mem += n
    c.active = <signed char *>mem; mem += nr
    hit = <unsigned char *>mem; mem += nr
    c.flag = <unsigned char *>c.tmp_sort  # bundle weights only, after its sorting is done
    c.exact = True
    if R.n_earn > n2:
        return None  # best_k holds one entry per earn rule

    # lines, read once each (one __dict__ per pydantic model), then sorted canonically
    # (sku, then line id)
    line_names[0] = <PyObject *>F_LINE_ID
    line_names[1] = <PyObject *>F_SKU
    line_names[2] = <PyObject *>F_QTY
    line_names[3] = <PyObject *>F_UNIT_PRICE
    line_names[4] = <PyObject *>F_BEST_BEFORE
    sf_warm(lines_t, n)
    for k in range(n):
        d = sf_dict(PyTuple_GET_ITEM(lines_t, k))
        if d == NULL:
            return None
        sf_fields(d, line_names, lf, 5)
        x = lf[0]
        y = lf[1]
        if x == NULL or y == NULL or not sf_is_str(x) or not sf_is_str(y):
            return None
        raw_ids[k] = x
        raw_skus[k] = y
        sf_prefetch(x)
        sf_prefetch(y)
        x = lf[2]
        if x == NULL or not sf_int(x, 1, QTY_MAX, &c.left[k]):
            return None
        raw_qty[k] = x
        x = lf[3]
        if x == NULL:
            return None
        raw_price[k] = x  # None: the catalog price
        x = lf[4]
        if x == NULL:
            return None
        if x != <PyObject *>None:
            if not sf_int(x, -TIME_MAX, TIME_MAX, &c.tmp_w[k]):
                return None
            c.tmp_b[k] = 1
        order[k] = k
    for k in range(1, n):  # stable insertion sort: baskets are tens of lines
        j = order[k]
        i = k - 1
        while i >= 0 and _line_before(raw_skus, raw_ids, j, order[i]):
            order[i + 1] = order[i]
            i -= 1
        order[i + 1] = j

    items = sf_field(catalog, F_ITEMS)
    if type(items) is not dict:
        return None
    line_ids = PyTuple_New(n)
    ent_keep = PyTuple_New(n)
    entries = nat.entries
    items_tag = sf_dict_tag(<PyObject *>items)
    nunits = 0
    cnt = 0
    for i in range(n):
        k = order[i]
        sku_p = raw_skus[k]
        put_borrowed(line_ids, i, raw_ids[k])
        skus[i] = sku_p
        qty_o[i] = raw_qty[k]
        c.qty[i] = c.left[k]
        if c.tmp_b[k]:
            c.has_expiry[i] = 1
            c.expiry[i] = c.tmp_w[k]
        x = PyDict_GetItemWithError(entries, <object>sku_p)
        if x != NULL and items_tag != 0 and (<LineEntry>x).tag == items_tag:
            pass  # checked against this very state of catalog.items: same item
        else:
            item_p = PyDict_GetItemWithError(items, <object>sku_p)
            if item_p == NULL:
                return None  # UnknownSku
            x = _line_entry(nat, rs, sku_p, item_p, x)
            if x == NULL:
                return None
            (<LineEntry>x).tag = items_tag
        e = <LineEntry>x
        y = raw_price[k]
        if y == <PyObject *>None:
            c.base[i] = e.price
            base_o[i] = <PyObject *>e.price_o  # no int to allocate and free per line
        else:
            if not sf_int(y, 0, MONEY_MAX, &c.base[i]):
                return None
            base_o[i] = y
        c.earns[i] = e.earns
        put_borrowed(ent_keep, i, x)
        ents[i] = x
        sf_prefetch(e.unit)
        nunits += e.nunit
        cnt += e.nopt
        c.unit[i] = c.base[i]
        c.net[i] = c.base[i] * c.qty[i]
        c.head[i] = -1
        c.tail[i] = -1
    for k in range(n):  # scratch used above
        c.left[k] = 0
        c.tmp_w[k] = 0
        c.tmp_b[k] = 0
    if n <= 64:  # duplicate line ids: InvalidBasket, raised by the reference
        for i in range(n):
            c.tmp_w[i] = sf_hash(PyTuple_GET_ITEM(line_ids, i))
        for i in range(n):
            for j in range(i + 1, n):
                if c.tmp_w[i] == c.tmp_w[j] and sf_str_eq(PyTuple_GET_ITEM(line_ids, i),
                                                          PyTuple_GET_ITEM(line_ids, j)):
                    return None
        for i in range(n):
            c.tmp_w[i] = 0
    elif len(set(line_ids)) != n:
        return None

    # gather (engine: unit_rules, hits): active rules under each line's sku and category
    cap_trip = cnt + R.n_ew * n
    udp[0] = <int *>_alloc(2 * n * sizeof(int64_t) + (3 * cap_trip + nunits + 4 * n) * sizeof(int))
    ud_amount = <int64_t *>udp[0]
    trip_key = <int *>(ud_amount + 2 * n)
    trip_line = trip_key + cap_trip
    sorted_lines = trip_line + cap_trip
    ucands = sorted_lines + cap_trip
    ud_rule = ucands + nunits
    ud_line = ud_rule + 2 * n
    for i in range(n):
        e = <LineEntry>ents[i]
        uoff[i] = nuc
        for k in range(e.nunit):
            o = e.unit[k]
            if active(c, o):
                ucands[nuc] = o
                nuc += 1
        ucnt[i] = nuc - uoff[i]
        for k in range(e.nopt):
            o = e.opt_rule[k]
            if not active(c, o):
                continue
            if not hit[o]:
                hit[o] = 1
                hits[nhits] = o
                nhits += 1
            trip_key[ntrip] = R.hot[o].slot_base + e.opt_slot[k]
            trip_line[ntrip] = i
            ntrip += 1
    for k in range(R.n_ew):  # basket-wide scopes: once per call
        o = R.ew_rule[k]
        if not active(c, o):
            continue
        if not hit[o]:
            hit[o] = 1
            hits[nhits] = o
            nhits += 1
        key = R.hot[o].slot_base + R.ew_slot[k]
        for i in range(n):
            if not (<LineEntry>ents[i]).ew_excl[k]:
                trip_key[ntrip] = key
                trip_line[ntrip] = i
                ntrip += 1
    if c.err:
        return None
    # each (rule, slot) its lines in order: a counting sort of the (slot, line) pairs
    for k in range(ntrip):
        slot_count[trip_key[k]] += 1
    for k in range(1, nhits):  # the hit rules by ordinal (engine: sorted(hits))
        o = hits[k]
        j = k - 1
        while j >= 0 and hits[j] > o:
            hits[j + 1] = hits[j]
            j -= 1
        hits[j + 1] = o
    j = 0
    for k in range(nhits):
        r = &R.rules[hits[k]]
        for key in range(r.slot_base, r.slot_base + r.nslots):
            slot_start[key] = j
            j += slot_count[key]
            slot_count[key] = 0
    for k in range(ntrip):
        key = trip_key[k]
        sorted_lines[slot_start[key] + slot_count[key]] = trip_line[k]
        slot_count[key] += 1

    # phases 1-2: the lowest unit price from markdowns and tier rules, per line
    for i in range(n):
        if ucnt[i]:
            nud = unit_phase(c, i, ucands + uoff[i], ucnt[i], ud_rule, ud_amount, ud_line, nud)
    if c.err:
        return None
    explain = []
    if nud:
        _explain_units(c, explain, line_ids, ud_rule, ud_amount, ud_line, nud)

    # phases 3-5
    cap_opts = nhits
    codes = ()
    coupon_rules = []
    coupons_o = sf_field(basket, F_COUPONS)
    if coupons_o:
        codes = sorted(frozenset(coupons_o))
        for code in codes:
            coupon_rules.extend(nat.coupons.get(code, ()))
    if len(coupon_rules) > cap_opts:
        cap_opts = len(coupon_rules)
    optsp[0] = <Opt *>_alloc((cap_opts + 1) * (sizeof(Opt) + sizeof(int)))
    opts = optsp[0]
    chosen = <int *>(opts + cap_opts + 1)
    if nhits:
        for phase in (ITEM, THRESHOLD):
            m = 0
            c.opool = 0
            for k in range(nhits):
                o = hits[k]
                if R.hot[o].phase != phase:
                    continue
                if not _grow_pool(c, 2 * n + 1):
                    return None
                m += _option(c, o, slot_start, slot_count, sorted_lines, &opts[m])
                if c.err:
                    return None
            if m:
                if not _masks(c, opts, m):
                    return None
                nch = choose(c, opts, m, phase != ITEM, chosen)
                if c.err:
                    return None
                apply_options(c, opts, chosen, nch, explain, line_ids)
                if c.err:
                    return None

    rejected = ()
    if coupons_o:
        m = 0
        c.opool = 0
        for o in coupon_rules:
            if not active(c, o):
                continue
            r = &R.rules[o]
            cnt = 0
            for i in range(n):
                if _coupon_matches(r, <object>skus[i], <object>(<LineEntry>ents[i]).category):
                    c.tmp_b[cnt] = i
                    cnt += 1
            if not _grow_pool(c, 2 * n + 1):
                return None
            if r.kind == K_COUPON:
                k = eligible(c, o, c.tmp_b, cnt, c.tmp_a + n)
                m += spend_option(c, o, c.tmp_a + n, k, 1, &opts[m])
            else:
                m += opt_coupon_item(c, o, c.tmp_b, cnt, &opts[m])
            if c.err:
                return None
        nch = 0
        if m:
            if not _masks(c, opts, m):
                return None
            nch = choose(c, opts, m, True, chosen)
            if c.err:
                return None
            apply_options(c, opts, chosen, nch, explain, line_ids)
            if c.err:
                return None
        used = set()
        for k in range(nch):
            used.add(<object>R.rules[opts[chosen[k]].rule].code)
        rejected = tuple([code for code in codes if code not in used])

    # phase 6: tenders (stored value, then points), then points earned
    total = 0
    for i in range(n):
        total += c.net[i]
    if member is not None:
        if not _i64(sf_field(basket, F_SV_REQ), 0, BIG, &requested):
            return None
        if requested:
            for k in range(R.n_sv):
                o = R.sv[k]
                if not active(c, o):
                    continue
                r = &R.rules[o]
                if not _i64(sf_field(member, F_SV_BAL), 0, BIG, &balance):
                    return None
                v = <int64_t>((<i128>total * r.max_share_bp) / BP)
                sv_total = requested if requested < balance else balance
                if v < sv_total:
                    sv_total = v
                if sv_total:
                    if not largest_remainder(c, sv_total, c.net, n, sv):
                        return None
                    explain.append(applied(<object>r.id, <object>r.kind_name, _TENDER, sv_total,
                                           0, 1, ids_where(line_ids, sv, n), _EMPTY))
                break
        if not _i64(sf_field(basket, F_POINTS_REQ), 0, BIG, &requested):
            return None
        if requested:
            for k in range(R.n_pt):
                o = R.pt[k]
                if not active(c, o):
                    continue
                r = &R.rules[o]
                if not _i64(sf_field(member, F_POINTS_BAL), 0, BIG, &balance):
                    return None
                cap_ = <int64_t>((<i128>total * r.max_share_bp) / BP)
                if total - sv_total < cap_:
                    cap_ = total - sv_total
                blocks = (requested if requested < balance else balance) / r.block_points
                if cap_ / r.block_minor < blocks:
                    blocks = cap_ / r.block_minor
                wide = <i128>blocks * r.block_points
                if wide > BIG or <i128>blocks * r.block_minor > BIG:
                    return None
                points = <int64_t>wide
                if points and points >= r.min_points:
                    pts_used = points
                    pv_total = blocks * r.block_minor
                if pv_total:
                    for i in range(n):
                        c.tmp_w2[i] = c.net[i] - sv[i]
                    if not largest_remainder(c, pv_total, c.tmp_w2, n, pv):
                        return None
                    if not largest_remainder(c, pts_used, pv, n, ptsl):
                        return None
                    explain.append(applied(<object>r.id, <object>r.kind_name, _TENDER, pv_total,
                                           pts_used, 1, ids_where(line_ids, pv, n), _EMPTY))
                break
        if R.n_earn:
            _earn(c, ents, explain, line_ids, pv, earned, ebase, best_k, best_pts)
            if c.err:
                return None

    # the priced basket
    out = PyTuple_New(n)
    subtotal = 0
    earned_total = 0
    for i in range(n):
        k = 0
        j = c.head[i]
        while j >= 0:
            k += 1
            j = c.rec_next[j]
        discounts = PyTuple_New(k)
        k = 0
        j = c.head[i]
        while j >= 0:
            r = &R.rules[c.rec_rule[j]]
            put(discounts, k, allocation(<object>r.id, <object>r.phase_name, c.rec_amount[j]))
            k += 1
            j = c.rec_next[j]
        pl = sf_alloc(_PricedLine, 12)
        put_borrowed(pl, 0, PyTuple_GET_ITEM(line_ids, i))
        put_borrowed(pl, 1, skus[i])
        put_borrowed(pl, 2, qty_o[i])
        put_borrowed(pl, 3, base_o[i])
        # equal amounts share one int object (ints are immutable): fewer allocations
        if c.qty[i] == 1:
            gross = <object>base_o[i]
        else:
            gross = c.base[i] * c.qty[i]
        put(pl, 4, gross)
        put(pl, 5, discounts)
        net = gross if c.head[i] < 0 else c.net[i]
        put(pl, 6, net)
        put(pl, 7, sv[i])
        put(pl, 8, pv[i])
        put(pl, 9, ptsl[i])
        put(pl, 10, net if sv[i] == 0 and pv[i] == 0 else c.net[i] - sv[i] - pv[i])
        put(pl, 11, earned[i])
        put(out, i, pl)
        subtotal += c.base[i] * c.qty[i]
        earned_total += earned[i]
    pb = sf_alloc(_PricedBasket, 20)
    put(pb, 0, sf_field(basket, F_ID))
    put(pb, 1, cur)
    put(pb, 2, _ENGINE_VERSION)
    put(pb, 3, nat.version)
    put(pb, 4, nat.hash)
    put(pb, 5, sf_field(catalog, F_VERSION))
    # Catalog.ruleset_hash() returns its cached _hash: read it from the instance dict
    # once cached (a Python-level call per basket otherwise)
    cd = sf_dict(<PyObject *>catalog) if type(catalog) is _Catalog else NULL
    h = sf_get(cd, F_HASH) if cd != NULL else NULL
    if h != NULL and sf_is_str(h):
        put_borrowed(pb, 6, h)
    else:
        put(pb, 6, catalog.ruleset_hash())
    put(pb, 7, None if member is None else sf_field(member, F_ID))
    put(pb, 8, out)
    put(pb, 9, subtotal)
    put(pb, 10, subtotal - total)
    put(pb, 11, total)
    put(pb, 12, sv_total)
    put(pb, 13, pv_total)
    put(pb, 14, pts_used)
    put(pb, 15, total - sv_total - pv_total)
    put(pb, 16, earned_total)
    put(pb, 17, tuple(explain))
    put(pb, 18, rejected)
    put(pb, 19, True if c.exact else False)
    return pb
