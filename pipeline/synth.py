"""Synthetic CRM data: leads, their activity events, and the exact truth behind them.

The generative story, per lead (vectorised over leads and events, numpy only):

1. **Profile.** Source, country, industry, company size, job title (seniority, function,
   messy casing), email (corporate / free-mail / disposable / invalid), phone, BANT answers
   (often missing).
2. **Hidden fit** ``f`` = a fixed function of the profile (including the lead's true company
   size and budget capacity, which the record shows only partly) + modest noise.
   **Hidden intent** ``i`` = a source effect + noise; the need / timeframe answers, the
   activity level, the pages per session and the email opens reveal it noisily.
3. **Hidden buying journey**: a continuous-time Markov chain over the phases browsing,
   buying, cooling, dormant, re_engaged, job_seeking and gone (``browsing -> buying``,
   ``browsing -> cooling -> dormant -> re_engaged -> buying ...``, ``dormant -> gone``:
   interest fades with inactivity; ``job_seeking -> gone``). Rates into ``buying`` grow with
   ``i`` and ``f``. Conversion is one more absorbing state, entered from phase ``s`` at the
   hazard ``h_s * exp(b_s f + c_s i)`` (large only in ``buying``; zero in ``gone``).
4. **Events** depend on nothing but the current phase and the lead's fixed traits: web
   sessions (a landing page plus a phase-dependent mix of pages: price-list downloads and
   demo / quote / consultation requests concentrate in ``buying``, careers views in
   ``job_seeking``), a ready-to-buy action that opens each buying phase, a visit (mostly
   after a retargeting click) that opens each re-engagement, marketing emails with
   phase-dependent opens and clicks, webinars, unsubscribes (likely when interest ends), and
   a one-off newsletter signup whose rate does *not* depend on the phase. After the
   conversion: contract, onboarding views, invoices, more pricing / site visits (leak bait).
5. **Outcome**: ``converted_at`` = the moment of entering the conversion state (rounded up
   to the second); conversions after the data end are not observed. Sales mark leads in the
   ``gone`` phase as lost 2-12 weeks after their interest ended (only before the data end).

Because the journey is Markov and the events depend only on the current phase, the
probability of converting within ``H`` days after ``as_of`` given everything observable up
to ``as_of`` *and* the hidden state is ``u_s(H)``, the absorption probability of the chain
from the phase ``s`` the lead is in at ``as_of``. :func:`true_probability` computes it by
uniformisation (a Poisson-weighted series, truncated where the remaining mass is < 1e-15),
so ``truth.csv`` is the exact conditional probability under the process that made the data.

Times inside this module are float days since ``settings.start`` (midnight); what leaves it
is integer seconds since ``start`` (``-1`` = missing) plus code arrays for the vocabularies.
Events never precede the lead's ``created_at`` (the form that created the lead is logged at
``created_at`` itself) and never reach the data end. Each chunk of ``CHUNK_SIZE`` leads
draws from its own child of ``SeedSequence(seed)``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError

SECONDS_PER_DAY = 86_400
#: Leads per chunk. Fixed (not a setting): each chunk draws from its own seed-sequence child,
#: so the output depends on (seed, settings) only, never on how chunks are scheduled.
CHUNK_SIZE = 50_000

_STR = np.dtypes.StringDType()

# --------------------------------------------------------------------------------------
# Phases of the hidden buying journey
# --------------------------------------------------------------------------------------
BROWSING, BUYING, COOLING, DORMANT, RE_ENGAGED, JOB_SEEKING, GONE, CONVERTED = range(8)
PHASES = (
    "browsing", "buying", "cooling", "dormant", "re_engaged", "job_seeking", "gone", "converted",
)
N_TRANSIENT = 6  # phases 0..5; GONE and CONVERTED absorb

# (from, to, rate per day at i = f = 0, intent coefficient, fit coefficient)
_TRANSITIONS = (
    (BROWSING, BUYING, 0.006, 1.0, 0.35),
    (BROWSING, COOLING, 0.11, 0.0, 0.0),
    (BUYING, COOLING, 0.06, 0.0, 0.0),
    (COOLING, DORMANT, 0.08, 0.0, 0.0),
    (COOLING, BUYING, 0.002, 1.0, 0.35),
    (DORMANT, RE_ENGAGED, 0.014, 0.5, 0.0),
    (DORMANT, GONE, 0.018, -0.3, 0.0),
    (RE_ENGAGED, BUYING, 0.013, 1.0, 0.35),
    (RE_ENGAGED, COOLING, 0.12, 0.0, 0.0),
    (JOB_SEEKING, GONE, 0.08, 0.0, 0.0),
)
# conversion hazard per day by phase at i = f = 0, and its fit / intent coefficients
_HAZARD = np.array([0.0003, 0.022, 0.0004, 0.00006, 0.001, 0.0001])
_HAZARD_FIT = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.0])
_HAZARD_INTENT = np.array([0.0, 0.3, 0.0, 0.0, 0.0, 0.0])

# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------
EVENT_TYPES = (
    "site_visit", "blog_read", "case_study_view", "lead_magnet_download", "newsletter_signup",
    "webinar_registration", "webinar_attended", "retargeting_click",
    "pricing_view", "price_list_download",
    "demo_request", "quote_request", "consultation_request", "chat_started",
    "email_sent", "email_open", "email_click",
    "unsubscribe", "careers_view",
    "contract_signed", "onboarding_view", "invoice_paid",
)
_E = {name: code for code, name in enumerate(EVENT_TYPES)}
#: Event types that only ever happen after ``converted_at``.
POST_CONVERSION_TYPES = ("contract_signed", "onboarding_view", "invoice_paid")
CHANNELS = ("web", "email", "ads", "chat", "sales")
_CHANNEL_OF_TYPE = np.zeros(len(EVENT_TYPES), dtype=np.int8)  # web by default
for _name, _ch in (
    ("email_sent", 1), ("email_open", 1), ("email_click", 1), ("unsubscribe", 1),
    ("retargeting_click", 2), ("chat_started", 3), ("contract_signed", 4), ("invoice_paid", 4),
):
    _CHANNEL_OF_TYPE[_E[_name]] = _ch

_BLOG = (
    "lead-scoring-101", "b2b-funnel-benchmarks", "email-nurture-playbook", "crm-hygiene-checklist",
    "attribution-models-explained", "abm-for-small-teams", "webinar-promotion-tips",
    "sales-marketing-alignment", "intent-data-primer", "landing-page-teardown",
    "marketing-ops-stack", "cold-email-that-works", "churn-early-warning-signs",
    "pipeline-forecasting", "content-calendar-template", "seo-for-saas",
    "pricing-page-psychology", "customer-onboarding-guide", "gdpr-for-marketers", "roi-calculator",
)
_PAGES_OF_TYPE: dict[str, tuple[str, ...]] = {
    "site_visit": (
        "/", "/", "/", "/product", "/features", "/integrations", "/solutions/marketing-teams",
        "/solutions/sales-teams", "/about", "/security", "/customers",
    ),
    "blog_read": tuple(f"/blog/{slug}" for slug in _BLOG),
    "case_study_view": tuple(
        f"/customers/{slug}" for slug in (
            "northwind-logistics", "bluepeak-health", "summit-capital", "orbit-media",
            "cedar-manufacturing", "lumen-software", "harbor-retail", "vertex-telecom",
        )
    ),
    "lead_magnet_download": tuple(
        f"/resources/{name}" for name in (
            "state-of-b2b-marketing-report.pdf", "lead-scoring-template.xlsx",
            "nurture-email-templates.zip", "marketing-budget-planner.xlsx", "buyers-guide.pdf",
        )
    ),
    "newsletter_signup": ("/newsletter", "/blog"),
    "webinar_registration": tuple(
        f"/webinars/{slug}/register" for slug in (
            "scoring-leads-that-sales-trusts", "nurture-at-scale", "forecasting-pipeline",
            "customer-stories-live",
        )
    ),
    "webinar_attended": ("/webinars/live",),
    "retargeting_click": ("/lp/see-it-in-action", "/lp/free-guide", "/lp/pricing-offer"),
    "pricing_view": ("/pricing", "/pricing", "/pricing/enterprise", "/pricing/compare"),
    "price_list_download": ("/pricing/price-list.pdf",),
    "demo_request": ("/demo",),
    "quote_request": ("/pricing/quote",),
    "consultation_request": ("/contact/consultation",),
    "chat_started": ("/pricing", "/", "/product", "/demo"),
    "unsubscribe": ("/email-preferences",),
    "careers_view": (
        "/careers", "/careers", "/careers/software-engineer", "/careers/account-executive",
        "/careers/marketing-intern", "/careers/customer-success-manager",
    ),
    "onboarding_view": tuple(
        f"/app/onboarding/{step}" for step in (
            "welcome", "import-contacts", "connect-crm", "invite-team", "first-campaign",
        )
    ),
}
PAGES: tuple[str, ...] = tuple(
    sorted({page for pages in _PAGES_OF_TYPE.values() for page in pages})
)
_PAGE_CODE = {page: code for code, page in enumerate(PAGES)}
_PAGE_CHOICES = [
    np.array([_PAGE_CODE[p] for p in _PAGES_OF_TYPE.get(name, ())], dtype=np.int16)
    for name in EVENT_TYPES
]

# Web sessions per day by phase (x activity level x activity_scale), extra pages per session
_SESSION_RATE = np.array([0.45, 0.8, 0.12, 0.06, 0.4, 0.4])
_SESSION_DEPTH = np.array([1.2, 2.0, 0.7, 0.6, 1.2, 1.0])
# The mix of pages viewed inside a session, by phase (rows are normalised below)
_SESSION_PAGES = (
    "site_visit", "blog_read", "pricing_view", "case_study_view", "price_list_download",
    "lead_magnet_download", "webinar_registration", "demo_request", "quote_request",
    "consultation_request", "chat_started", "careers_view",
)
_SESSION_MIX = np.array([
    [.28, .36, .08, .08, .003, .06, .03, .003, .002, .003, .012, .002],   # browsing
    [.17, .06, .22, .14, .090, .02, .02, .080, .060, .040, .070, .0005],  # buying
    [.30, .40, .07, .07, .003, .05, .03, .002, .001, .002, .010, .002],   # cooling
    [.32, .45, .06, .05, .002, .04, .03, .002, .001, .001, .005, .003],   # dormant
    [.27, .26, .15, .12, .020, .05, .03, .012, .008, .010, .020, .002],   # re_engaged
    [.20, .16, .02, .03, .001, .03, .005, .001, .001, .002, .005, .540],  # job_seeking
])
_SESSION_CUM = np.cumsum(_SESSION_MIX / _SESSION_MIX.sum(1, keepdims=True), axis=1)
_SESSION_CODES = np.array([_E[name] for name in _SESSION_PAGES], dtype=np.int8)
# The form that created the lead, by initial phase
_FORMS = (
    "lead_magnet_download", "newsletter_signup", "webinar_registration", "consultation_request",
    "demo_request", "quote_request", "price_list_download", "chat_started", "careers_view",
)
_FORM_MIX = np.zeros((N_TRANSIENT, len(_FORMS)))
_FORM_MIX[BROWSING] = [.49, .25, .16, .004, .004, .001, .005, .07, 0]
_FORM_MIX[BUYING] = [0, 0, 0, .18, .42, .25, .10, .05, 0]
_FORM_MIX[JOB_SEEKING] = [.20, .25, 0, 0, 0, 0, 0, .15, .40]
_FORM_MIX[[COOLING, DORMANT, RE_ENGAGED]] = _FORM_MIX[BROWSING]
_FORM_CUM = np.cumsum(_FORM_MIX, axis=1)
_FORM_CODES = np.array([_E[name] for name in _FORMS], dtype=np.int8)

_BUY_START_CODES = np.array(
    [_E[x] for x in ("demo_request", "quote_request", "consultation_request",
                     "price_list_download", "chat_started")], dtype=np.int64
)
_BUY_START_P = np.array([0.35, 0.2, 0.15, 0.2, 0.1])
_EMAIL_OPEN = np.array([0.35, 0.55, 0.25, 0.25, 0.40, 0.15, 0.0])  # by phase when sent
_EMAIL_CLICK = np.array([0.18, 0.35, 0.10, 0.08, 0.25, 0.08, 0.0])  # given an open
_UNSUBSCRIBE_RATE = np.array([0.0004, 0.0002, 0.0015, 0.003, 0.0008, 0.008])
_UNSUBSCRIBE_WHEN_GONE = 0.6
_LOST_AFTER_DAYS, _LOST_EXTRA_DAYS = 14.0, 40.0  # sales close gone leads after this
_AD_CLICK_RATE = np.array([0.02, 0.02, 0.03, 0.006, 0.03, 0.01])
_NEWSLETTER_RATE = 0.003  # the same in every active phase: a signup says little
_WEBINAR_ATTEND = np.array([0.45, 0.70, 0.30, 0.25, 0.50, 0.30])
_RE_ENGAGE_BY_AD = 0.65  # share of re-engagements that start with a retargeting click
_MARKETING_RATES = np.array([0.04, 0.07, 0.10])  # marketing emails per day (list segments)

# --------------------------------------------------------------------------------------
# Profile vocabularies (invented for this project)
# --------------------------------------------------------------------------------------
SOURCES = (
    "organic_search", "paid_search", "social_ads", "referral", "email_campaign", "partner",
    "event", "direct",
)
_SOURCE_P = np.array([.24, .16, .14, .08, .10, .06, .07, .15])
_SOURCE_P_JOB = np.array([.40, .05, .20, .05, .02, .01, .02, .25])
_SOURCE_FIT = np.array([0.0, 0.1, -0.3, 0.3, -0.1, 0.3, 0.2, 0.1])
_SOURCE_INTENT = np.array([0.0, 0.2, -0.4, 0.4, -0.1, 0.1, 0.1, 0.3])

# country, weight, fit tier effect, calling code, web domain suffix, legal suffixes
_COUNTRIES = (
    ("US", .30, .2, "1", ".com", (" Inc.", " LLC", "")),
    ("GB", .09, .2, "44", ".co.uk", (" Ltd", "")),
    ("DE", .08, .2, "49", ".de", (" GmbH", " AG", "")),
    ("FR", .05, .2, "33", ".fr", (" SAS", "")),
    ("CA", .05, .2, "1", ".ca", (" Inc.", "")),
    ("AU", .04, .2, "61", ".com.au", (" Pty Ltd", "")),
    ("NL", .03, .2, "31", ".nl", (" B.V.", "")),
    ("SE", .02, .2, "46", ".se", (" AB", "")),
    ("ES", .03, 0.0, "34", ".es", (" S.L.", "")),
    ("IT", .03, 0.0, "39", ".it", (" S.r.l.", "")),
    ("PL", .03, 0.0, "48", ".pl", (" sp. z o.o.", "")),
    ("IE", .02, 0.0, "353", ".ie", (" Ltd", "")),
    ("SG", .02, 0.0, "65", ".sg", (" Pte Ltd", "")),
    ("JP", .02, 0.0, "81", ".jp", (" K.K.", "")),
    ("IN", .07, -.4, "91", ".in", (" Pvt Ltd", "")),
    ("BR", .04, -.4, "55", ".com.br", (" Ltda", "")),
    ("MX", .02, -.4, "52", ".mx", (" S.A. de C.V.", "")),
    ("ZA", .02, -.4, "27", ".co.za", (" (Pty) Ltd", "")),
    ("NG", .01, -.4, "234", ".ng", (" Ltd", "")),
    ("PH", .02, -.4, "63", ".ph", (" Inc.", "")),
)
_COUNTRY_P = np.array([c[1] for c in _COUNTRIES]) / sum(c[1] for c in _COUNTRIES)
_COUNTRY_FIT = np.array([c[2] for c in _COUNTRIES])

_INDUSTRIES = (
    ("software", .18, .5), ("finance", .09, .3), ("professional_services", .10, .3),
    ("manufacturing", .11, .1), ("healthcare", .08, 0.0), ("retail", .09, -.2),
    ("education", .07, -.5), ("government", .04, -.4), ("media", .06, 0.0),
    ("logistics", .06, 0.0), ("real_estate", .04, -.2), ("nonprofit", .03, -.6),
    ("telecom", .03, .2), ("energy", .02, .1),
)
_INDUSTRY_P = np.array([x[1] for x in _INDUSTRIES]) / sum(x[1] for x in _INDUSTRIES)
_INDUSTRY_FIT = np.array([x[2] for x in _INDUSTRIES])

# seniority levels: c_level, vp, director/head, manager, individual contributor, junior
_SENIORITY_P = np.array([.10, .07, .14, .27, .32, .10])
_SENIORITY_P_JOB = np.array([0, 0, 0, .05, .45, .50])
_SENIORITY_FIT = np.array([0.4, 0.6, 0.5, 0.25, -0.15, -0.9])
_FUNCTION_FIT = {"mkt": 0.3, "sales": 0.25, "exec": 0.1, "ops": 0.0, "eng": -0.1, "fin": 0.0,
                 "hr": -0.3, "other": -0.1}
_TITLES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("CEO", "exec"), ("Chief Executive Officer", "exec"), ("Founder", "exec"),
     ("Co-Founder & CEO", "exec"), ("Owner", "exec"), ("CMO", "mkt"),
     ("Chief Marketing Officer", "mkt"), ("CTO", "eng"), ("COO", "ops"), ("CFO", "fin"),
     ("Managing Director", "exec"), ("President", "exec"), ("Chief Revenue Officer", "sales")),
    (("VP of Marketing", "mkt"), ("VP Sales", "sales"), ("Vice President, Marketing", "mkt"),
     ("VP of Growth", "mkt"), ("VP Engineering", "eng"), ("VP Operations", "ops"),
     ("SVP Sales", "sales"), ("VP Mktg", "mkt"), ("Vice President of Customer Success", "sales")),
    (("Head of Sales", "sales"), ("Head of Marketing", "mkt"), ("Head of Growth", "mkt"),
     ("Marketing Director", "mkt"), ("Director of Demand Generation", "mkt"),
     ("Sales Director", "sales"), ("IT Director", "eng"), ("Director of Operations", "ops"),
     ("Head of Digital", "mkt"), ("Head of People", "hr"), ("Finance Director", "fin"),
     ("Head of Sales & Marketing", "sales")),
    (("Marketing Manager", "mkt"), ("Sr. Marketing Manager", "mkt"), ("Sales Manager", "sales"),
     ("Product Manager", "eng"), ("Project Manager", "ops"), ("IT Manager", "eng"),
     ("Operations Manager", "ops"), ("Demand Generation Manager", "mkt"),
     ("Account Manager", "sales"), ("Office Manager", "ops"), ("HR Manager", "hr"),
     ("Digital Marketing Manager", "mkt"), ("CRM Manager", "mkt")),
    (("Marketing Specialist", "mkt"), ("Sales Representative", "sales"),
     ("Business Development Representative", "sales"), ("SDR", "sales"),
     ("Software Engineer", "eng"), ("Data Analyst", "eng"), ("Consultant", "other"),
     ("Accountant", "fin"), ("Designer", "other"), ("Content Writer", "mkt"),
     ("Developer", "eng"), ("Marketing Coordinator", "mkt"), ("Recruiter", "hr")),
    (("Marketing Intern", "mkt"), ("Sales Intern", "sales"), ("Student", "other"),
     ("Assistant", "other"), ("Junior Developer", "eng"), ("Trainee", "other"),
     ("Working Student", "other"), ("Graduate", "other")),
)

_FIRST = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Susan", "Richard", "Jessica", "Thomas", "Sarah", "Daniel", "Karen",
    "Matthew", "Nancy", "Anthony", "Lisa", "Mark", "Emily", "Paul", "Anna", "Lukas", "Sophie",
    "Jonas", "Lea", "Hugo", "Chloe", "Lars", "Ingrid", "Pablo", "Lucia", "Marco", "Giulia",
    "Piotr", "Zofia", "Aarav", "Priya", "Rahul", "Ananya", "Kenji", "Yuki", "Wei", "Mei",
    "Thiago", "Camila", "Diego", "Valentina", "Sipho", "Thandiwe", "Chinedu", "Ngozi", "Jose",
    "Maria", "Oliver", "Amelia",
)
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark",
    "Lewis", "Walker", "Hall", "Young", "King", "Wright", "Mueller", "Schmidt", "Schneider",
    "Fischer", "Weber", "Dubois", "Laurent", "Bernard", "Johansson", "Lindqvist", "Garcia",
    "Martinez", "Rossi", "Bianchi", "Kowalski", "Nowak", "Sharma", "Patel", "Gupta", "Singh",
    "Tanaka", "Sato", "Wang", "Li", "Silva", "Santos", "Hernandez", "Lopez", "Dlamini",
    "Nkosi", "Okafor", "Adeyemi", "Reyes", "Cruz", "O'Brien", "Murphy",
)
_COMPANY_A = (
    "North", "Blue", "Silver", "Bright", "Red", "Green", "Iron", "Swift", "Clear", "Summit",
    "True", "Open", "Next", "Prime", "Rapid", "Cloud", "Data", "Urban", "Alpha", "Nova",
    "Terra", "Vertex", "Orbit", "Pixel", "Quant", "Harbor", "Maple", "Cedar", "Falcon", "Lumen",
)
_COMPANY_B = (
    "wind", "peak", "stone", "field", "bridge", "path", "works", "point", "line", "gate",
    "scale", "forge", "mark", "wave", "labs", "logic", "ware", "base", "sight", "hub",
)
_COMPANY_KIND = (
    "", " Analytics", " Systems", " Logistics", " Solutions", " Health", " Partners", " Media",
    " Capital", " Software", " Group", " Industries",
)
_FREEMAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.de",
             "proton.me", "mail.ru")
_FREEMAIL_P = np.array([.55, .10, .10, .10, .05, .04, .03, .03])
_DISPOSABLE = ("mailinator.com", "10minutemail.com", "guerrillamail.com", "yopmail.com",
               "trashmail.com", "tempmail.dev")
_HANDLE_A = ("super", "dark", "mega", "cool", "lucky", "happy", "silent", "crazy", "little",
             "big", "mr", "the", "real", "ultra", "red")
_HANDLE_B = ("drakon", "wolf", "ninja", "pixel", "tiger", "gamer", "rider", "panda", "storm",
             "coder", "falcon", "shadow", "viking", "rocket", "bear")
BUDGETS = ("<10k", "10k-50k", "50k-250k", ">250k")
NEEDS = ("exploring", "problem_identified", "urgent")
TIMEFRAMES = ("0-3m", "3-6m", "6-12m", "12m+")
# How much of the hidden state the record and the behaviour show (noise = unobservable part)
_BUDGET_FIT = 0.25  # fit per unit of (hidden) budget capacity
_BUDGET_NOISE = 0.35  # budget capacity not explained by company size
_FIT_NOISE = 0.12  # fit not explained by the profile
_INTENT_SD = 0.55  # intent not explained by the source
_BANT_NOISE = 0.35  # noise between intent and the need / timeframe answers
_ACTIVITY_INTENT, _ACTIVITY_NOISE = 0.8, 0.1  # log activity level = 0.8 intent + noise
_OPEN_NOISE = 0.2  # email-open propensity not explained by intent
_DEPTH_INTENT = 0.4  # log pages per session grow with intent

# email kinds
_CORPORATE, _FREE, _DISPOSABLE_KIND, _INVALID, _NO_EMAIL = range(5)
_EMAIL_FIT = np.array([0.35, -0.25, -1.0, -0.6, -0.6])
_FIT_CENTER = 0.35  # keeps the average lead's fit near 0 (a constant, so chunks agree)


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------
class SettingsError(ConfigError, ValueError):
    """Invalid synthetic-data settings (a ConfigError for the CLI, a ValueError for callers)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class SynthSettings:
    """Knobs of the synthetic data set (params ``generate``, ``snapshots``, ``label``)."""

    n_leads: int = 20_000
    seed: int = 42
    start: dt.date = dt.date(2025, 1, 1)
    months: int = 18
    snapshot_ages_days: tuple[int, ...] = (1, 7, 30, 90)
    horizon_days: int = 90
    activity_scale: float = 1.0

    def __post_init__(self) -> None:
        if not _is_int(self.n_leads) or self.n_leads <= 0:
            raise SettingsError(f"`generate.leads` must be > 0; got {self.n_leads!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise SettingsError(f"`generate.seed` must be an integer >= 0; got {self.seed!r}")
        if not isinstance(self.start, dt.date) or isinstance(self.start, dt.datetime):
            raise SettingsError(f"`generate.start` must be a date (YYYY-MM-DD); got {self.start!r}")
        if not _is_int(self.months) or not 1 <= self.months <= 240:
            raise SettingsError(f"`generate.months` must be between 1 and 240; got {self.months!r}")
        ages = self.snapshot_ages_days
        if isinstance(ages, list | tuple | np.ndarray):
            ages = tuple(ages)
            object.__setattr__(self, "snapshot_ages_days", ages)
        if (
            not isinstance(ages, tuple)
            or not ages
            or not all(_is_int(a) and a >= 0 for a in ages)
            or len(set(ages)) != len(ages)
        ):
            raise SettingsError(
                f"`snapshots.ages_days` must be a non-empty list of distinct integers >= 0; "
                f"got {self.snapshot_ages_days!r}"
            )
        if not _is_int(self.horizon_days) or self.horizon_days <= 0:
            raise SettingsError(f"`label.horizon_days` must be > 0; got {self.horizon_days!r}")
        scale = self.activity_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
            raise SettingsError(f"`generate.activity_scale` must be > 0; got {scale!r}")
        if not math.isfinite(scale):
            raise SettingsError(f"`generate.activity_scale` must be finite; got {scale!r}")

    @property
    def end(self) -> dt.date:
        """The data end (export date): ``start`` plus ``months`` calendar months."""
        month0 = self.start.month - 1 + self.months
        year, month = self.start.year + month0 // 12, month0 % 12 + 1
        day = min(self.start.day, calendar.monthrange(year, month)[1])
        return dt.date(year, month, day)

    @property
    def span_days(self) -> int:
        """Days from ``start`` to the data end."""
        return (self.end - self.start).days

    @property
    def n_chunks(self) -> int:
        return -(-self.n_leads // CHUNK_SIZE)


# --------------------------------------------------------------------------------------
# Output containers
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Latent:
    """The hidden state of a block of leads; what :func:`true_probability` needs.

    ``q[k, s, t]`` is lead ``k``'s rate (per day) from transient phase ``s`` to phase ``t``
    (``t = CONVERTED`` is the conversion hazard). The path is every phase entry up to the data
    end: ``path_lead`` (row in this block), ``path_time`` (days since start), ``path_phase``,
    sorted by lead then time; the first entry of each lead is at its ``created_at``.
    """

    start: dt.date
    end_days: float
    lead_offset: int  # global row number of this block's first lead (lead_id = "L" + row + 1)
    created_s: np.ndarray
    fit: np.ndarray
    intent: np.ndarray
    q: np.ndarray
    path_lead: np.ndarray
    path_time: np.ndarray
    path_phase: np.ndarray

    @property
    def n_leads(self) -> int:
        return int(self.created_s.size)

    @staticmethod
    def concat(blocks: list[Latent]) -> Latent:
        """One Latent for consecutive blocks (rows renumbered from the first block's offset)."""
        offsets = np.cumsum([0] + [b.n_leads for b in blocks[:-1]])
        return Latent(
            start=blocks[0].start,
            end_days=blocks[0].end_days,
            lead_offset=blocks[0].lead_offset,
            created_s=np.concatenate([b.created_s for b in blocks]),
            fit=np.concatenate([b.fit for b in blocks]),
            intent=np.concatenate([b.intent for b in blocks]),
            q=np.concatenate([b.q for b in blocks]),
            path_lead=np.concatenate(
                [b.path_lead + o for b, o in zip(blocks, offsets, strict=True)]
            ),
            path_time=np.concatenate([b.path_time for b in blocks]),
            path_phase=np.concatenate([b.path_phase for b in blocks]),
        )


@dataclass(frozen=True)
class SynthChunk:
    """One block of generated rows. Times are int64 seconds since ``start``; -1 = missing.

    ``leads``: column name -> array (strings as object arrays with ``None`` for missing,
    ``company_size`` int64 with -1 for missing, ``converted`` 0/1). ``events``: ``lead``
    (row in this block), ``timestamp``, ``event_type`` (code into :data:`EVENT_TYPES`),
    ``page`` (code into :data:`PAGES`, -1 = none), ``channel`` (code into :data:`CHANNELS`),
    sorted by lead, then time. ``truth``: ``lead``, ``as_of``, ``p_true``.
    """

    index: int
    lead_offset: int
    leads: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    latent: Latent


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------
def chunk_seed(seed: int, index: int) -> np.random.SeedSequence:
    """The seed of chunk ``index``: the same as ``SeedSequence(seed).spawn(n)[index]``."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def iter_chunks(settings: SynthSettings) -> Iterator[SynthChunk]:
    """Generate the data set chunk by chunk (in lead order)."""
    for index in range(settings.n_chunks):
        yield generate_chunk(settings, index)


def generate(settings: SynthSettings) -> SynthChunk:
    """The whole data set in memory (for tests and notebooks; use chunks for big samples)."""
    chunks = list(iter_chunks(settings))
    if len(chunks) == 1:
        return chunks[0]
    offsets = [c.lead_offset for c in chunks]
    leads = {k: np.concatenate([c.leads[k] for c in chunks]) for k in chunks[0].leads}
    events = {k: np.concatenate([c.events[k] for c in chunks]) for k in chunks[0].events}
    events["lead"] = np.concatenate(
        [c.events["lead"].astype(np.int64) + o for c, o in zip(chunks, offsets, strict=True)]
    )
    truth = {k: np.concatenate([c.truth[k] for c in chunks]) for k in chunks[0].truth}
    truth["lead"] = np.concatenate(
        [c.truth["lead"].astype(np.int64) + o for c, o in zip(chunks, offsets, strict=True)]
    )
    return SynthChunk(0, 0, leads, events, truth, Latent.concat([c.latent for c in chunks]))


def generate_chunk(settings: SynthSettings, index: int) -> SynthChunk:
    """Leads ``index * CHUNK_SIZE ...`` with their events, truth rows and hidden state."""
    lo = index * CHUNK_SIZE
    hi = min(lo + CHUNK_SIZE, settings.n_leads)
    if not 0 <= lo < hi:
        raise ValueError(f"chunk index must be in [0, {settings.n_chunks}); got {index}")
    ss_profile, ss_journey, ss_events = chunk_seed(settings.seed, index).spawn(3)
    end_days = float(settings.span_days)

    rng_profile = np.random.default_rng(ss_profile)
    created_s = _created_seconds(rng_profile, settings, lo, hi)
    profile = _profile(rng_profile, created_s.size)
    rng = np.random.default_rng(ss_journey)
    q = _rate_tensor(profile["fit"], profile["intent"])
    created_d = created_s / SECONDS_PER_DAY
    path_lead, path_time, path_phase = _simulate_paths(
        rng, created_d, profile["initial_phase"], q, end_days
    )
    latent = Latent(
        start=settings.start, end_days=end_days, lead_offset=lo, created_s=created_s,
        fit=profile["fit"], intent=profile["intent"], q=q, path_lead=path_lead,
        path_time=path_time, path_phase=path_phase,
    )
    outcome = _outcomes(rng, latent, end_days)
    events = _events(
        np.random.default_rng(ss_events), settings, latent, profile, outcome, end_days
    )
    leads = _lead_columns(profile, outcome, latent, end_days, settings.n_leads)
    truth = _truth_rows(latent, outcome, settings)
    return SynthChunk(index, lo, leads, events, truth, latent)


def true_probability(
    latent: Latent, lead: np.ndarray, as_of: np.ndarray, horizon_days: float
) -> np.ndarray:
    """P(the lead converts in ``(as_of, as_of + horizon_days]`` | all it is and did so far).

    ``lead`` holds rows of ``latent`` (0-based), ``as_of`` datetime64 values (or anything
    ``np.asarray(..., 'datetime64[s]')`` accepts). Exact under the generating process: the
    absorption probability of the lead's Markov journey from the phase it is in at ``as_of``
    (0 when that phase is ``gone``). NaN where the question has no answer: ``as_of`` before
    ``created_at``, at or after the conversion, or after the data end (not simulated).
    """
    lead = np.asarray(lead, dtype=np.int64)
    as_of_days = _days_since_start(latent.start, as_of)
    if lead.shape != as_of_days.shape:
        raise ValueError(f"`lead` and `as_of` must have the same shape; got {lead.shape} "
                         f"and {as_of_days.shape}")
    if not horizon_days > 0:
        raise ValueError(f"`horizon_days` must be > 0; got {horizon_days!r}")
    if lead.size and (lead.min() < 0 or lead.max() >= latent.n_leads):
        raise ValueError(f"`lead` must hold rows 0..{latent.n_leads - 1} of the latent state")
    shape = lead.shape
    lead, as_of_days = lead.ravel(), as_of_days.ravel()
    phase = phase_at(latent, lead, as_of_days)
    out = np.full(lead.size, np.nan)
    uniq, inverse = np.unique(lead, return_inverse=True)
    absorb = _absorption_probability(latent.q[uniq], float(horizon_days))
    transient = (phase >= 0) & (phase < N_TRANSIENT)
    out[transient] = absorb[inverse.ravel()[transient], phase[transient]]
    out[phase == GONE] = 0.0
    return out.reshape(shape)


def phase_at(latent: Latent, lead: np.ndarray, as_of_days: np.ndarray) -> np.ndarray:
    """The hidden phase of each lead at each time (days since start); -1 where unknown."""
    lead = np.asarray(lead, dtype=np.int64)
    as_of_days = np.asarray(as_of_days, dtype=np.float64)
    width = latent.end_days + 2.0
    path_key = latent.path_lead * width + latent.path_time
    query = lead * width + np.clip(as_of_days, -1.0, latent.end_days + 1.0)
    pos = np.searchsorted(path_key, query, side="right") - 1
    ok = (pos >= 0) & (as_of_days <= latent.end_days) & (as_of_days >= 0)
    pos = np.where(ok, pos, 0)
    ok &= latent.path_lead[pos] == lead
    return np.where(ok, latent.path_phase[pos], -1).astype(np.int64)


# --------------------------------------------------------------------------------------
# The hidden process
# --------------------------------------------------------------------------------------
def _days_since_start(start: dt.date, when: np.ndarray) -> np.ndarray:
    sec = np.asarray(when, dtype="datetime64[s]") - np.datetime64(start, "s")
    return sec.astype(np.int64) / SECONDS_PER_DAY


def _created_seconds(
    rng: np.random.Generator, settings: SynthSettings, lo: int, hi: int
) -> np.ndarray:
    """Creation times of leads lo..hi-1: stratified by chunk so ids follow time; mild growth."""
    n, total = hi - lo, settings.n_leads
    u = (lo + np.sort(rng.random(n)) * n) / total  # quantiles of this chunk's share
    growth = 0.5  # the lead flow at the end is 1.5x the flow at the start
    span = float(settings.span_days)
    days = span * (np.sqrt(1.0 + growth * (2.0 + growth) * u) - 1.0) / growth
    return np.minimum(np.floor(days * SECONDS_PER_DAY), span * SECONDS_PER_DAY - 1).astype(
        np.int64
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choose_rows(rng: np.random.Generator, cum: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One categorical draw per element, from the cumulative distribution ``cum[rows]``."""
    u = rng.random(rows.size)
    out = np.zeros(rows.size, dtype=np.int64)
    for r in np.unique(rows):
        sel = rows == r
        out[sel] = np.searchsorted(cum[r], u[sel] * cum[r, -1], side="right")
    return np.minimum(out, cum.shape[1] - 1)


def _profile(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The visible lead record (as codes) plus its hidden fit and intent."""
    job_seeker = rng.random(n) < 0.045
    source = np.where(
        job_seeker,
        rng.choice(len(SOURCES), n, p=_SOURCE_P_JOB),
        rng.choice(len(SOURCES), n, p=_SOURCE_P),
    )
    country = rng.choice(len(_COUNTRIES), n, p=_COUNTRY_P)
    industry = rng.choice(len(_INDUSTRIES), n, p=_INDUSTRY_P)
    log_size = rng.normal(3.6, 1.7, n)  # natural log of employees
    size = np.clip(np.round(np.exp(log_size)), 1, 250_000).astype(np.int64)
    seniority = np.where(
        job_seeker,
        rng.choice(6, n, p=_SENIORITY_P_JOB),
        rng.choice(6, n, p=_SENIORITY_P),
    )
    title_idx = np.floor(rng.random(n) * np.array([len(t) for t in _TITLES])[seniority])
    title_idx = title_idx.astype(np.int64)
    function_fit = np.array(
        [[_FUNCTION_FIT[f] for _, f in level] + [0.0] * (13 - len(level)) for level in _TITLES]
    )[seniority, title_idx]

    # email kind: bigger companies use corporate addresses more often
    log10_size = np.log10(size)
    p_corp = np.where(job_seeker, 0.08, _sigmoid(-0.8 + 0.9 * log10_size))
    u = rng.random(n)
    rest = (u - p_corp) / (1 - p_corp)
    email_kind = np.select(
        [u < p_corp, rest < 0.90, rest < 0.94, rest < 0.98],
        [_CORPORATE, _FREE, _DISPOSABLE_KIND, _INVALID],
        _NO_EMAIL,
    )

    # hidden budget capacity; the BANT budget answer shows it through noise, often not at all
    budget_capacity = 0.7 * (log_size - 3.6) / 1.7 + rng.normal(0, _BUDGET_NOISE, n)
    size_fit = np.select(
        [size < 10, size < 50, size < 250, size < 1000, size < 5000],
        [-0.6, -0.2, 0.3, 0.5, 0.4],
        0.1,
    )
    fit_visible = (
        size_fit + _INDUSTRY_FIT[industry] + _COUNTRY_FIT[country] + _SENIORITY_FIT[seniority]
        + function_fit + _EMAIL_FIT[email_kind] + _SOURCE_FIT[source]
        + _BUDGET_FIT * budget_capacity
    )
    fit = fit_visible - _FIT_CENTER + rng.normal(0, _FIT_NOISE, n)
    intent = _SOURCE_INTENT[source] + rng.normal(0, _INTENT_SD, n)
    intent = np.where(job_seeker, -1.5 + rng.normal(0, 0.3, n), intent)

    budget = np.digitize(budget_capacity + rng.normal(0, 0.3, n), [-0.9, 0.1, 1.0])
    budget = np.where(rng.random(n) < np.where(job_seeker, 0.9, 0.62), -1, budget)
    need = np.digitize(intent + rng.normal(0, _BANT_NOISE, n), [-0.4, 0.6])
    need = np.where(rng.random(n) < _sigmoid(0.0 - 0.5 * intent), -1, need)
    timeframe = 3 - np.digitize(intent + rng.normal(0, _BANT_NOISE, n), [-0.6, 0.1, 0.8])
    timeframe = np.where(rng.random(n) < _sigmoid(0.2 - 0.5 * intent), -1, timeframe)

    initial_phase = np.where(
        rng.random(n) < _sigmoid(-3.1 + 0.9 * intent + 0.4 * fit), BUYING, BROWSING
    )
    initial_phase = np.where(job_seeker, JOB_SEEKING, initial_phase)

    return {
        "job_seeker": job_seeker, "source": source, "country": country, "industry": industry,
        "size": size, "seniority": seniority, "title_idx": title_idx, "email_kind": email_kind,
        "budget": budget, "need": need, "timeframe": timeframe, "fit": fit, "intent": intent,
        "initial_phase": initial_phase.astype(np.int64),
        # behaviour style: intent shows in how much a lead does (sessions, pages, email
        # opens), around a personal activity level; the mailing list sets the email rate
        "activity": np.exp(
            rng.normal(0, _ACTIVITY_NOISE, n) + np.where(job_seeker, 0.0, _ACTIVITY_INTENT * intent)
        ),
        "open_propensity": np.exp(
            rng.normal(0, _OPEN_NOISE, n) + np.where(job_seeker, -0.3, 0.5 * intent)
        ),
        "mail_rate": _MARKETING_RATES[rng.integers(0, _MARKETING_RATES.size, n)],
        "names": rng.integers(0, 2**31, (n, 12)),  # raw draws for the text columns
    }


def _rate_tensor(fit: np.ndarray, intent: np.ndarray) -> np.ndarray:
    """Per-lead generator rows: q[k, s, t] (per day) for transient s; t = CONVERTED = hazard."""
    q = np.zeros((fit.size, N_TRANSIENT, len(PHASES)))
    for src, dst, base, c_intent, c_fit in _TRANSITIONS:
        q[:, src, dst] = base * np.exp(c_intent * intent + c_fit * fit)
    q[:, :, CONVERTED] = _HAZARD * np.exp(
        np.outer(fit, _HAZARD_FIT) + np.outer(intent, _HAZARD_INTENT)
    )
    return q


def _simulate_paths(
    rng: np.random.Generator,
    created_d: np.ndarray,
    initial_phase: np.ndarray,
    q: np.ndarray,
    end_days: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run every lead's Markov journey from creation to absorption or the data end."""
    leads, times, phases = [np.arange(created_d.size)], [created_d], [initial_phase]
    idx, t, s = np.arange(created_d.size), created_d.copy(), initial_phase.copy()
    while idx.size:
        rows = q[idx, s]
        cum = np.cumsum(rows, axis=1)
        total = cum[:, -1]
        t = t + rng.exponential(size=idx.size) / total
        u = rng.random(idx.size) * total
        nxt = np.minimum((cum <= u[:, None]).sum(axis=1), len(PHASES) - 1)
        inside = t <= end_days
        leads.append(idx[inside])
        times.append(t[inside])
        phases.append(nxt[inside])
        go_on = inside & (nxt < N_TRANSIENT)
        idx, t, s = idx[go_on], t[go_on], nxt[go_on]
    lead = np.concatenate(leads)
    order = np.argsort(lead, kind="stable")  # each lead's entries were appended in time order
    return lead[order], np.concatenate(times)[order], np.concatenate(phases)[order].astype(np.int8)


def _absorption_probability(q: np.ndarray, horizon: float) -> np.ndarray:
    """u[k, s] = P(conversion within ``horizon`` days | lead k is in transient phase s).

    Uniformisation: with nu >= every exit rate, M = I + Q / nu is a stochastic matrix and
    u(H) = sum_j Poisson(j; nu H) M^j e_conv. Truncated where the Poisson tail is < 1e-15.
    """
    exit_rate = q.sum(axis=2)  # (k, s)
    nu = exit_rate.max(axis=1)
    stay = 1.0 - exit_rate / nu[:, None]
    # the sparse structure of M: (from, to, probability per lead); to CONVERTED is constant 1
    moves = [(src, dst, q[:, src, dst] / nu) for src, dst, *_ in _TRANSITIONS if dst < GONE]
    into_conv = q[:, :, CONVERTED] / nu[:, None]
    mean = nu * horizon
    terms = int(np.ceil(mean.max() + 12.0 * np.sqrt(mean.max()) + 40.0))
    v = np.zeros((q.shape[0], N_TRANSIENT))  # M^j e_conv on the transient phases
    acc = np.zeros_like(v)
    log_w = -mean
    log_mean = np.log(mean)
    for j in range(1, terms + 1):
        nxt = stay * v + into_conv
        for src, dst, prob in moves:
            nxt[:, src] += prob * v[:, dst]
        v = nxt
        log_w = log_w + log_mean - math.log(j)
        acc += np.exp(log_w)[:, None] * v
    return np.clip(acc, 0.0, 1.0)


def _outcomes(rng: np.random.Generator, latent: Latent, end_days: float) -> dict[str, np.ndarray]:
    """Conversion and loss per lead (days and seconds since start; inf / -1 when none)."""
    n = latent.n_leads
    conv_d = np.full(n, np.inf)
    is_conv = latent.path_phase == CONVERTED
    conv_d[latent.path_lead[is_conv]] = latent.path_time[is_conv]
    converted = np.isfinite(conv_d)  # the path stops at the data end: later ones are unseen
    conv_s = np.full(n, -1, dtype=np.int64)
    conv_s[converted] = np.ceil(conv_d[converted] * SECONDS_PER_DAY)

    gone_d = np.full(n, np.inf)
    is_gone = latent.path_phase == GONE
    gone_d[latent.path_lead[is_gone]] = latent.path_time[is_gone]
    lost_d = gone_d + _LOST_AFTER_DAYS + rng.exponential(_LOST_EXTRA_DAYS, n)
    lost = lost_d < end_days
    lost_s = np.full(n, -1, dtype=np.int64)
    lost_s[lost] = np.ceil(lost_d[lost] * SECONDS_PER_DAY)
    # ever in the buying phase before the data end (what sales call "qualified")
    buying = np.zeros(n, dtype=bool)
    buying[latent.path_lead[latent.path_phase == BUYING]] = True
    return {
        "conv_d": conv_d, "conv_s": conv_s, "converted": converted,
        "lost_d": np.where(lost_s >= 0, lost_d, np.inf), "lost_s": lost_s,
        "gone_d": gone_d, "qualified": buying,
    }


def _truth_rows(latent: Latent, outcome: dict, settings: SynthSettings) -> dict[str, np.ndarray]:
    """(lead, as_of, p_true) for each snapshot age with as_of at or before the data end
    where the lead is still open: not converted at or before as_of, not lost at or before
    as_of (the feature stage's rules). Sorted by lead, then as_of."""
    end_s = settings.span_days * SECONDS_PER_DAY
    absorb = _absorption_probability(latent.q, float(settings.horizon_days))
    rows_lead, rows_as_of, rows_p = [], [], []
    lead_all = np.arange(latent.n_leads)
    for age in settings.snapshot_ages_days:
        as_of = latent.created_s + age * SECONDS_PER_DAY
        conv_s, lost_s = outcome["conv_s"], outcome["lost_s"]
        keep = (
            (as_of <= end_s)
            & ((conv_s < 0) | (conv_s > as_of))
            & ((lost_s < 0) | (lost_s > as_of))
        )
        lead = lead_all[keep]
        phase = phase_at(latent, lead, as_of[keep] / SECONDS_PER_DAY)
        p = np.where(phase < N_TRANSIENT, absorb[lead, np.minimum(phase, N_TRANSIENT - 1)], 0.0)
        rows_lead.append(lead)
        rows_as_of.append(as_of[keep])
        rows_p.append(p)
    lead = np.concatenate(rows_lead)
    as_of = np.concatenate(rows_as_of)
    order = np.lexsort((as_of, lead))
    return {
        "lead": lead[order].astype(np.int32),
        "as_of": as_of[order],
        "p_true": np.concatenate(rows_p)[order],
    }


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------
class _Events:
    """Accumulates event parts: lead row, time (days), type code, tie-break order, and
    whether the event is prospect behaviour (dropped if it would fall after the conversion)."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(
        self,
        lead: np.ndarray,
        time: np.ndarray,
        etype: np.ndarray | int,
        order: np.ndarray | int = 0,
        prospect: bool = True,
    ) -> None:
        lead = np.asarray(lead, dtype=np.int64)
        n = lead.size
        self.parts.append((
            lead,
            np.asarray(time, dtype=np.float64),
            np.broadcast_to(np.asarray(etype, dtype=np.int8), (n,)),
            np.broadcast_to(np.asarray(order, dtype=np.int16), (n,)),
            np.full(n, prospect),
        ))


def _poisson_times(
    rng: np.random.Generator, t0: np.ndarray, t1: np.ndarray, rate: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous Poisson points on each interval [t0, t1): (interval index, time)."""
    length = np.maximum(t1 - t0, 0.0)
    counts = rng.poisson(rate * length)
    owner = np.repeat(np.arange(t0.size), counts)
    return owner, t0[owner] + rng.random(owner.size) * length[owner]


def _first_per_lead(lead: np.ndarray, time: np.ndarray, n: int) -> np.ndarray:
    first = np.full(n, np.inf)
    np.minimum.at(first, lead, time)
    return first


def _events(
    rng: np.random.Generator,
    settings: SynthSettings,
    latent: Latent,
    profile: dict[str, np.ndarray],
    outcome: dict[str, np.ndarray],
    end_days: float,
) -> dict[str, np.ndarray]:
    """All activity of the block's leads, sorted by lead, then time."""
    scale = settings.activity_scale
    n = latent.n_leads
    created_d = latent.created_s / SECONDS_PER_DAY
    conv_d = outcome["conv_d"]
    active_end = np.minimum(conv_d, end_days)  # prospect behaviour stops at conversion
    ev = _Events()

    # segments of transient phases, clipped to the prospect window
    p_lead, p_time, p_phase = latent.path_lead, latent.path_time, latent.path_phase
    nxt_time = np.append(p_time[1:], np.inf)
    nxt_time = np.where(np.append(p_lead[1:] != p_lead[:-1], True), np.inf, nxt_time)
    seg = (p_phase < N_TRANSIENT) & (p_time < active_end[p_lead])
    s_lead, s_phase, s_t0 = p_lead[seg], p_phase[seg].astype(np.int64), p_time[seg]
    s_t1 = np.minimum(nxt_time[seg], active_end[s_lead])

    # ---- web sessions: regular, the creation session, and ad-driven re-engagements
    owner, t = _poisson_times(
        rng, s_t0, s_t1, _SESSION_RATE[s_phase] * profile["activity"][s_lead] * scale
    )
    sess_lead, sess_phase, sess_t = [s_lead[owner]], [s_phase[owner]], [t]
    sess_landing = [np.full(owner.size, _E["site_visit"], dtype=np.int64)]

    init = profile["initial_phase"]
    form = _FORM_CODES[_choose_rows(rng, _FORM_CUM, init)]
    sess_lead.append(np.arange(n))
    sess_phase.append(init)
    sess_t.append(created_d)
    sess_landing.append(form.astype(np.int64))

    # a buying phase starts with a ready-to-buy action; a re-engagement with a visit, most
    # often through a retargeting ad
    entered = s_t0 > created_d[s_lead]
    buy = entered & (s_phase == BUYING)
    sess_lead.append(s_lead[buy])
    sess_phase.append(s_phase[buy])
    sess_t.append(s_t0[buy])
    sess_landing.append(_BUY_START_CODES[rng.choice(_BUY_START_P.size, buy.sum(), p=_BUY_START_P)])
    back = entered & (s_phase == RE_ENGAGED)
    by_ad = back & (rng.random(s_lead.size) < _RE_ENGAGE_BY_AD)
    ev.add(s_lead[by_ad], s_t0[by_ad], _E["retargeting_click"])
    sess_lead.append(s_lead[back])
    sess_phase.append(s_phase[back])
    sess_t.append(s_t0[back] + 20.0 / SECONDS_PER_DAY)
    sess_landing.append(np.full(back.sum(), _E["site_visit"], dtype=np.int64))

    sess_lead = np.concatenate(sess_lead)
    sess_phase = np.concatenate(sess_phase)
    sess_t = np.concatenate(sess_t)
    ev.add(sess_lead, sess_t, np.concatenate(sess_landing), 0)
    sess_intent = latent.intent[sess_lead]
    depth = rng.poisson(
        _SESSION_DEPTH[sess_phase] * np.exp(_DEPTH_INTENT * np.maximum(sess_intent, -1.0))
    )
    page_owner = np.repeat(np.arange(sess_lead.size), depth)
    gaps = (5.0 + rng.exponential(75.0, page_owner.size)) / SECONDS_PER_DAY
    csum = np.concatenate([[0.0], np.cumsum(gaps)])
    first = np.cumsum(depth) - depth  # index of each session's first page
    offset = csum[1:] - np.repeat(csum[first], depth)
    position = np.arange(page_owner.size) - np.repeat(first, depth) + 1
    page_type = _SESSION_CODES[_choose_rows(rng, _SESSION_CUM, sess_phase[page_owner])]
    # keen leads look at pricing and customer stories whatever their phase
    keen = (rng.random(page_owner.size) < 0.3 * _sigmoid(1.5 * sess_intent[page_owner] - 1.0)) & (
        sess_phase[page_owner] != JOB_SEEKING
    )
    page_type[keen] = np.where(
        rng.random(keen.sum()) < 0.6, _E["pricing_view"], _E["case_study_view"]
    )
    ev.add(sess_lead[page_owner], sess_t[page_owner] + offset, page_type, position)

    # ---- background retargeting clicks, each landing on the site
    owner, t = _poisson_times(rng, s_t0, s_t1, _AD_CLICK_RATE[s_phase] * scale)
    ev.add(s_lead[owner], t, _E["retargeting_click"])
    ev.add(s_lead[owner], t + 15.0 / SECONDS_PER_DAY, _E["site_visit"], 1)

    # ---- newsletter: one signup per lead at most, equally likely in every active phase
    owner, t = _poisson_times(rng, s_t0, s_t1, _NEWSLETTER_RATE * scale)
    by_form = form == _E["newsletter_signup"]  # already logged by the creation session
    first_nl = _first_per_lead(
        np.concatenate([s_lead[owner], np.flatnonzero(by_form)]),
        np.concatenate([t, created_d[by_form]]),
        n,
    )
    nl_rows = np.flatnonzero(np.isfinite(first_nl) & ~by_form)
    ev.add(nl_rows, first_nl[nl_rows], _E["newsletter_signup"])

    # ---- emails: welcome + marketing until unsubscribe, conversion, loss or the data end
    mailable = profile["email_kind"] <= _DISPOSABLE_KIND
    owner, t = _poisson_times(rng, s_t0, s_t1, _UNSUBSCRIBE_RATE[s_phase] * scale)
    ok = mailable[s_lead[owner]]
    unsub = _first_per_lead(s_lead[owner][ok], t[ok], n)
    # many leads say so when their interest ends: they unsubscribe within days
    says_so = mailable & (rng.random(n) < _UNSUBSCRIBE_WHEN_GONE)
    gone_unsub = outcome["gone_d"] + rng.exponential(3.0, n)
    says_so &= gone_unsub < outcome["lost_d"]  # once closed as lost, no more emails
    unsub = np.minimum(unsub, np.where(says_so, gone_unsub, np.inf))
    has_unsub = np.isfinite(unsub)
    ev.add(np.flatnonzero(has_unsub), unsub[has_unsub], _E["unsubscribe"])
    mail_end = np.minimum.reduce([active_end, unsub, outcome["lost_d"]])
    welcome = mailable & (created_d + 0.01 < mail_end)
    owner, t = _poisson_times(
        rng, created_d, np.where(mailable, mail_end, created_d), profile["mail_rate"] * scale
    )
    sent_lead = np.concatenate([np.flatnonzero(welcome), owner])
    sent_t = np.concatenate([created_d[welcome] + rng.uniform(60, 600, welcome.sum())
                             / SECONDS_PER_DAY, t])
    ev.add(sent_lead, sent_t, _E["email_sent"])
    phase_sent = phase_at(latent, sent_lead, sent_t)
    p_open = _EMAIL_OPEN[np.clip(phase_sent, 0, GONE)] * profile["open_propensity"][sent_lead]
    p_open = np.where(profile["email_kind"][sent_lead] == _DISPOSABLE_KIND, 0.0, p_open)
    opened = rng.random(sent_lead.size) < np.minimum(p_open, 0.95)
    open_t = sent_t[opened] + rng.exponential(0.3, opened.sum())
    open_lead, open_phase = sent_lead[opened], phase_sent[opened]
    ev.add(open_lead, open_t, _E["email_open"], prospect=False)
    clicked = rng.random(open_lead.size) < _EMAIL_CLICK[np.clip(open_phase, 0, GONE)]
    click_t = open_t[clicked] + (30.0 + rng.exponential(120.0, clicked.sum())) / SECONDS_PER_DAY
    ev.add(open_lead[clicked], click_t, _E["email_click"], prospect=False)
    ev.add(open_lead[clicked], click_t + 10.0 / SECONDS_PER_DAY, _E["site_visit"], 1, False)

    # ---- after the conversion (leak bait): contract, onboarding, invoices, more visits
    won = np.flatnonzero(np.isfinite(conv_d))
    t_won = conv_d[won]
    contract_t = t_won + 0.05 + rng.exponential(1.5, won.size)
    ev.add(won, contract_t, _E["contract_signed"], prospect=False)
    owner, t = _poisson_times(rng, t_won + 1.0, t_won + 60.0, 0.2 * scale)
    ev.add(won[owner], t, _E["onboarding_view"], prospect=False)
    months = settings.months + 2
    inv_lead = np.repeat(won, months)
    inv_t = np.repeat(t_won + 5.0, months) + 30.0 * np.tile(np.arange(months), won.size)
    ev.add(inv_lead, inv_t + rng.uniform(0, 3, inv_lead.size), _E["invoice_paid"], prospect=False)
    for etype, rate in (("pricing_view", 0.015), ("site_visit", 0.04)):
        owner, t = _poisson_times(rng, t_won + 0.1, np.full(won.size, end_days), rate * scale)
        ev.add(won[owner], t, _E[etype], prospect=False)

    # ---- assemble: prospect behaviour stops at the conversion, nothing reaches the data end
    lead = np.concatenate([p[0] for p in ev.parts])
    time = np.concatenate([p[1] for p in ev.parts])
    etype = np.concatenate([p[2] for p in ev.parts])
    order = np.concatenate([p[3] for p in ev.parts])
    prospect = np.concatenate([p[4] for p in ev.parts])
    keep = (time < end_days) & ~(prospect & (time >= conv_d[lead]))
    lead, time, etype, order = lead[keep], time[keep], etype[keep], order[keep]

    # webinar attendance follows a registration (decided by the phase at registration)
    reg = etype == _E["webinar_registration"]
    reg_phase = phase_at(latent, lead[reg], time[reg])
    attend = rng.random(reg.sum()) < _WEBINAR_ATTEND[np.clip(reg_phase, 0, N_TRANSIENT - 1)]
    att_t = time[reg][attend] + rng.uniform(1.0, 14.0, attend.sum())
    att_ok = att_t < end_days
    lead = np.concatenate([lead, lead[reg][attend][att_ok]])
    time = np.concatenate([time, att_t[att_ok]])
    etype = np.concatenate([etype, np.full(att_ok.sum(), _E["webinar_attended"], np.int8)])
    order = np.concatenate([order, np.zeros(att_ok.sum(), np.int16)])

    ts = np.floor(time * SECONDS_PER_DAY).astype(np.int64)
    ts = np.maximum(ts, latent.created_s[lead])  # float rounding at created_at itself
    sort = np.lexsort((order, ts, lead))
    lead, ts, etype = lead[sort], ts[sort], etype[sort]
    return {
        "lead": lead.astype(np.int32),
        "timestamp": ts,
        "event_type": etype,
        "page": _pick_pages(rng, etype),
        "channel": _CHANNEL_OF_TYPE[etype],
    }


def _pick_pages(rng: np.random.Generator, etype: np.ndarray) -> np.ndarray:
    page = np.full(etype.size, -1, dtype=np.int16)
    u = rng.random(etype.size)
    for code, choices in enumerate(_PAGE_CHOICES):
        if choices.size:
            sel = etype == code
            page[sel] = choices[(u[sel] * choices.size).astype(np.int64)]
    return page


# --------------------------------------------------------------------------------------
# Lead record text
# --------------------------------------------------------------------------------------
def _pick(vocab: tuple[str, ...] | np.ndarray, draws: np.ndarray) -> np.ndarray:
    arr = np.asarray(vocab, dtype=_STR)
    return arr[draws % arr.size]


def _digits(draws: np.ndarray, width: int) -> np.ndarray:
    return np.strings.zfill((draws % 10**width).astype(_STR), width)


def _with_missing(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    out = values.astype(object)
    out[missing] = None
    return out


def _lead_columns(
    profile: dict[str, np.ndarray], outcome: dict[str, np.ndarray], latent: Latent,
    end_days: float, n_total: int,
) -> dict[str, np.ndarray]:
    """The leads table of the block (contract columns + the leaky CRM ``status``)."""
    n = latent.n_leads
    raw = profile["names"]
    lower = np.strings.lower
    lo = latent.lead_offset
    id_width = max(7, len(str(n_total)))
    lead_id = np.strings.add("L", np.strings.zfill((np.arange(lo + 1, lo + n + 1)).astype(_STR),
                                                   id_width))
    first, last = _pick(_FIRST, raw[:, 0]), _pick(_LAST, raw[:, 1])
    country = profile["country"]

    # company: name, web domain, legal suffix by country
    a_idx, b_idx, k_idx = raw[:, 2] % len(_COMPANY_A), raw[:, 3] % len(_COMPANY_B), raw[:, 4]
    core = np.strings.add(_pick(_COMPANY_A, a_idx), _pick(_COMPANY_B, b_idx))
    suffixes = np.array([[c[5][j % len(c[5])] for j in range(3)] for c in _COUNTRIES], dtype=_STR)
    company = np.strings.add(np.strings.add(core, _pick(_COMPANY_KIND, k_idx)),
                             suffixes[country, raw[:, 5] % 3])
    tld = np.where(raw[:, 6] % 10 < 6, ".com", np.array([c[4] for c in _COUNTRIES])[country])
    domain = np.strings.add(lower(core), tld.astype(_STR))
    core_clean = np.strings.replace(lower(core), " ", "")

    # email
    fl, ll = lower(np.strings.replace(first, "'", "")), lower(np.strings.replace(last, "'", ""))
    dot = np.strings.add(np.strings.add(fl, "."), ll)
    kind_draw = raw[:, 7] % 100
    corp_local = np.select(
        [kind_draw < 45, kind_draw < 65, kind_draw < 80, kind_draw < 88],
        [dot, np.strings.add(np.strings.slice(fl, 0, 1), ll), fl,
         np.strings.add(np.strings.add(fl, "_"), ll)],
        np.strings.add(np.strings.add(first, "."), np.strings.replace(last, "'", "")),
    )
    handle_num = (raw[:, 8] % 99_999 + 1).astype(_STR)
    handle = np.strings.add(
        np.strings.add(_pick(_HANDLE_A, raw[:, 9]), _pick(_HANDLE_B, raw[:, 10])), handle_num
    )
    year = (1960 + raw[:, 8] % 45).astype(_STR)
    free_local = np.select(
        [kind_draw < 40, kind_draw < 65, kind_draw < 85],
        [handle, np.strings.add(dot, year),
         np.strings.add(np.strings.add(fl, np.strings.slice(ll, 0, 1)), _digits(raw[:, 8], 2))],
        np.strings.add(fl, ll),
    )
    free_domain = np.asarray(_FREEMAIL, dtype=_STR)[
        np.searchsorted(np.cumsum(_FREEMAIL_P), (raw[:, 11] % 1000) / 1000.0, side="right")
        .clip(0, len(_FREEMAIL) - 1)
    ]
    at = np.strings.add
    invalid = np.select(
        [kind_draw % 5 == 0, kind_draw % 5 == 1, kind_draw % 5 == 2, kind_draw % 5 == 3],
        [at(dot, "@"), at(dot, "gmail.com"), np.full(n, "n/a", dtype=_STR), at(at(fl, "@"),
                                                                              core_clean)],
        np.full(n, "test@test", dtype=_STR),
    )
    kind = profile["email_kind"]
    email = np.select(
        [kind == _CORPORATE, kind == _FREE, kind == _DISPOSABLE_KIND, kind == _INVALID],
        [at(at(corp_local, "@"), domain), at(at(free_local, "@"), free_domain),
         at(at(handle, "@"), _pick(_DISPOSABLE, raw[:, 11])), invalid],
        np.full(n, "", dtype=_STR),
    )

    # phone: a few formats, often missing
    cc = np.array([c[3] for c in _COUNTRIES], dtype=_STR)[country]
    d3a = _digits(raw[:, 3] + raw[:, 8], 3)
    d3b = _digits(raw[:, 9] * 7 + raw[:, 10], 3)
    d4 = _digits(raw[:, 11] * 13 + raw[:, 2], 4)
    fmt = raw[:, 5] % 10
    phone = np.select(
        [fmt < 6, fmt < 8],
        [at(at(at(at(at(at(at("+", cc), " "), d3a), " "), d3b), " "), d4),
         at(at(at(at("+", cc), d3a), d3b), d4)],
        at(at(at(at(at("(", d3a), ") "), d3b), "-"), d4),
    )

    # job title, with the casing a CRM really holds
    title_tab = np.array(
        [[t for t, _ in level] + [""] * (13 - len(level)) for level in _TITLES], dtype=_STR
    )
    title = title_tab[profile["seniority"], profile["title_idx"]]
    case = raw[:, 6] % 100
    title = np.select(
        [case < 62, case < 77, case < 83, case < 93],
        [title, lower(title), np.strings.upper(title), np.strings.title(title)],
        at(at(" ", title), " "),
    )
    first = np.where(raw[:, 0] % 50 == 0, lower(first), first)

    u_miss = (raw[:, 10] % 1000) / 1000.0
    job = profile["job_seeker"]
    company_missing = (u_miss < 0.05) | (job & (raw[:, 4] % 3 == 0)) | (
        (kind == _FREE) & (raw[:, 5] % 5 < 1)
    )
    size = np.where((raw[:, 9] % 100 < 5) | company_missing, -1, profile["size"])
    end_s = int(round(end_days * SECONDS_PER_DAY))
    recent = latent.created_s > end_s - 21 * SECONDS_PER_DAY
    status = np.select(
        [outcome["converted"], outcome["lost_s"] >= 0, outcome["qualified"], recent],
        ["won", "lost", "qualified", "new"],
        "contacted",
    )
    return {
        "lead_id": lead_id.astype(object),
        "created_at": latent.created_s,
        "source": np.asarray(SOURCES, dtype=object)[profile["source"]],
        "email": _with_missing(email, kind == _NO_EMAIL),
        "first_name": _with_missing(first, raw[:, 0] % 40 == 1),
        "last_name": _with_missing(last, raw[:, 1] % 40 == 1),
        "phone": _with_missing(phone, raw[:, 7] % 100 >= 72),
        "company": _with_missing(company, company_missing),
        "company_size": size,
        "industry": _with_missing(
            np.asarray([x[0] for x in _INDUSTRIES], dtype=_STR)[profile["industry"]],
            (raw[:, 8] % 20 == 0) | company_missing & (raw[:, 9] % 2 == 0),
        ),
        "country": _with_missing(
            np.asarray([c[0] for c in _COUNTRIES], dtype=_STR)[country], raw[:, 10] % 33 == 0
        ),
        "job_title": _with_missing(title, raw[:, 11] % 20 == 0),
        "budget": _coded(BUDGETS, profile["budget"]),
        "need": _coded(NEEDS, profile["need"]),
        "timeframe": _coded(TIMEFRAMES, profile["timeframe"]),
        "converted": outcome["converted"].astype(np.int64),
        "converted_at": outcome["conv_s"],
        "lost_at": outcome["lost_s"],
        "status": status.astype(object),
    }


def _coded(vocab: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
    out = np.asarray(vocab, dtype=object)[np.maximum(codes, 0)]
    out[codes < 0] = None
    return out
