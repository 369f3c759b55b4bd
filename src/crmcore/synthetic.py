"""A deterministic synthetic customer base: the demo, the benchmarks and the tests build on it.

Everything is a pure function of `(seed, customer index, as_of)`. Each customer's hidden
profile (when acquired, how often they buy, when they silently drop out, what they
like) comes from its own random stream, so every record type streams separately in
bounded memory and comes out identical on every run; a base of N customers is the
prefix of a bigger one with the same seed.

Buying follows the Pareto/NBD story lifetime-value models assume: purchases arrive
as a Poisson process whose rate differs between customers (Gamma), each customer is
alive for an exponential lifetime (Gamma-distributed dropout rate), and basket values
depend on a per-customer price band that is independent of frequency. Customers who
drop out often complain shortly before and stop logging in, so churn models have
something to learn; favourite categories give next-offer models theirs.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import attrs

from crmcore import values as v
from crmcore.crm import CRM, Cases
from crmcore.errors import ValidationError
from crmcore.model import (
    Agent,
    Case,
    CaseKind,
    CasePriority,
    CaseStatus,
    Channel,
    ChannelFamily,
    Consent,
    ConsentStatus,
    Customer,
    Direction,
    Interaction,
    LifecycleStage,
    Location,
    Opportunity,
    OpportunityKind,
    OrderLine,
    PartyKind,
    PostalAddress,
    Purchase,
    ServicePoint,
    ServicePointKind,
    Stage,
    StageChange,
    Team,
)

T = TypeVar("T")

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
"""The default end of history: fixed, so a seed alone decides the data."""

YEAR = 365.25 * 86_400
"""Seconds in a year; profile times are kept in years since acquisition."""


# ---- the world: countries, places, staff, catalogue ----


@attrs.frozen
class City:
    name: str
    region: str
    postal_codes: tuple[str, ...]
    latitude: float
    longitude: float


@attrs.frozen
class Country:
    code: str
    weight: int
    currency: str
    language: str
    mobile_prefixes: tuple[str, ...]
    """E.164 prefixes of mobile numbers; `digits` random digits follow."""
    digits: int
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[City, ...]
    street: Callable[[random.Random], str]
    company_suffix: str
    call_centre: str


def _pick(rng: random.Random, items: Sequence[str]) -> str:
    return items[int(rng.random() * len(items))]


def _fr_street(rng: random.Random) -> str:
    kind = _pick(rng, ("rue", "avenue", "boulevard", "place"))
    name = _pick(rng, ("de la République", "Victor Hugo", "des Lilas", "Jean Jaurès", "du Marché", "Pasteur"))
    return f"{rng.randint(1, 180)} {kind} {name}"


def _de_street(rng: random.Random) -> str:
    name = _pick(rng, ("Haupt", "Garten", "Schul", "Bahnhof", "Linden", "Berg"))
    return f"{name}{_pick(rng, ('straße', 'weg', 'allee'))} {rng.randint(1, 120)}"


def _gb_street(rng: random.Random) -> str:
    name = _pick(rng, ("Church", "Station", "Victoria", "Park", "Mill", "King's"))
    return f"{rng.randint(1, 250)} {name} {_pick(rng, ('Road', 'Street', 'Lane', 'Close'))}"


def _us_street(rng: random.Random) -> str:
    name = _pick(rng, ("Maple", "Oak", "Washington", "Lake", "Hill", "Main"))
    return f"{rng.randint(10, 9_999)} {name} {_pick(rng, ('St', 'Ave', 'Blvd', 'Dr'))}"


def _es_street(rng: random.Random) -> str:
    name = _pick(rng, ("Mayor", "de Alcalá", "del Sol", "Real", "de la Paz", "Nueva"))
    return f"Calle {name}, {rng.randint(1, 150)}"


def _it_street(rng: random.Random) -> str:
    name = _pick(rng, ("Roma", "Garibaldi", "Mazzini", "Dante", "Verdi", "Cavour"))
    return f"Via {name} {rng.randint(1, 200)}"


COUNTRIES: tuple[Country, ...] = (
    Country(
        "FR", 30, "EUR", "fr-FR", ("+336", "+337"), 8,
        ("Jean", "Marie", "Pierre", "Sophie", "Luc", "Camille", "Élodie", "François", "Hélène",
         "Thomas", "Léa", "Nicolas", "Chloé", "Julien", "Inès", "Mathieu"),
        ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
         "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "Fournier"),
        (City("Paris", "Île-de-France", ("75002", "75011", "75015", "75018"), 48.857, 2.352),
         City("Lyon", "Auvergne-Rhône-Alpes", ("69001", "69003", "69007"), 45.764, 4.836),
         City("Lille", "Hauts-de-France", ("59000", "59800"), 50.629, 3.057),
         City("Bordeaux", "Nouvelle-Aquitaine", ("33000", "33800"), 44.838, -0.579)),
        _fr_street, "SARL", "lille-cc",
    ),
    Country(
        "DE", 20, "EUR", "de-DE", ("+49151", "+49160", "+49170", "+49176"), 8,
        ("Lukas", "Anna", "Jonas", "Lea", "Felix", "Sophie", "Maximilian", "Marie", "Paul",
         "Emilia", "Jürgen", "Sabine", "Uwe", "Katrin"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
         "Schulz", "Hoffmann", "Schäfer", "Koch"),
        (City("Berlin", "Berlin", ("10115", "10243", "12047"), 52.520, 13.405),
         City("Hamburg", "Hamburg", ("20095", "22765"), 53.551, 9.993),
         City("München", "Bayern", ("80331", "80469"), 48.137, 11.575),
         City("Leipzig", "Sachsen", ("04109", "04315"), 51.340, 12.375)),
        _de_street, "GmbH", "leipzig-cc",
    ),
    Country(
        "GB", 15, "GBP", "en-GB", ("+447",), 9,
        ("Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Emily", "Charlotte",
         "William", "Sophie", "James"),
        ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Evans",
         "Thomas", "O'Brien", "Hughes"),
        (City("London", "Greater London", ("SW1A 1AA", "E1 6AN", "N1 9GU"), 51.507, -0.128),
         City("Manchester", "Greater Manchester", ("M1 1AE", "M4 5JD"), 53.481, -2.243),
         City("Bristol", "Bristol", ("BS1 4DJ", "BS8 1TH"), 51.455, -2.588)),
        _gb_street, "Ltd", "dublin-cc",
    ),
    Country(
        "US", 15, "USD", "en-US", ("+1212", "+1415", "+1312", "+1617", "+1206"), 7,
        ("James", "Mary", "Michael", "Jennifer", "David", "Linda", "Robert", "Patricia", "Daniel",
         "Jessica", "Aaliyah", "Carlos"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Rodriguez",
         "Martinez", "Nguyen", "Kim", "Lee"),
        (City("New York", "NY", ("10001", "10013", "11201"), 40.713, -74.006),
         City("San Francisco", "CA", ("94103", "94110"), 37.775, -122.419),
         City("Chicago", "IL", ("60601", "60614"), 41.878, -87.630),
         City("Boston", "MA", ("02108", "02116"), 42.360, -71.059)),
        _us_street, "Inc.", "dublin-cc",
    ),
    Country(
        "ES", 10, "EUR", "es-ES", ("+346",), 8,
        ("Lucía", "Hugo", "Martina", "Mateo", "Sofía", "Pablo", "María", "Javier", "Carmen",
         "Álvaro"),
        ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez",
         "Gómez", "Martín"),
        (City("Madrid", "Comunidad de Madrid", ("28001", "28013"), 40.417, -3.704),
         City("Barcelona", "Cataluña", ("08001", "08013"), 41.385, 2.173),
         City("Valencia", "Comunitat Valenciana", ("46001", "46021"), 39.470, -0.376)),
        _es_street, "S.L.", "lille-cc",
    ),
    Country(
        "IT", 10, "EUR", "it-IT", ("+393",), 9,
        ("Giulia", "Francesco", "Sofia", "Alessandro", "Aurora", "Lorenzo", "Chiara", "Matteo",
         "Giorgia", "Leonardo"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
         "Marino", "Greco"),
        (City("Milano", "Lombardia", ("20121", "20135"), 45.464, 9.190),
         City("Roma", "Lazio", ("00118", "00184"), 41.903, 12.496),
         City("Torino", "Piemonte", ("10121", "10138"), 45.070, 7.687)),
        _it_street, "S.r.l.", "lille-cc",
    ),
)
_BY_CODE = {c.code: c for c in COUNTRIES}
_COUNTRY_WEIGHTS = list(itertools.accumulate(c.weight for c in COUNTRIES))


@attrs.frozen
class Place:
    """A service point as the generator sees it: who it serves and who works there."""

    id: str
    name: str
    kind: ServicePointKind
    country: str
    city: str
    street: str
    postal_code: str
    latitude: float
    longitude: float
    timezone: str
    serves: tuple[str, ...]
    """Countries whose customers use it; empty for web and app, which serve everyone."""
    staff: int
    team: str | None


PLACES: tuple[Place, ...] = (
    Place("paris-opera", "Paris Opéra store", ServicePointKind.BRANCH, "FR", "Paris",
          "12 boulevard Haussmann", "75009", 48.873, 2.334, "Europe/Paris", ("FR",), 3, "store"),
    Place("lyon-bellecour", "Lyon Bellecour store", ServicePointKind.BRANCH, "FR", "Lyon",
          "4 place Bellecour", "69002", 45.757, 4.832, "Europe/Paris", ("FR",), 3, "store"),
    Place("berlin-mitte", "Berlin Mitte store", ServicePointKind.BRANCH, "DE", "Berlin",
          "Friedrichstraße 90", "10117", 52.517, 13.389, "Europe/Berlin", ("DE",), 3, "store"),
    Place("london-soho", "London Soho store", ServicePointKind.BRANCH, "GB", "London",
          "20 Oxford Street", "W1D 1AS", 51.516, -0.131, "Europe/London", ("GB",), 3, "store"),
    Place("new-york-5th", "New York Fifth Avenue store", ServicePointKind.BRANCH, "US", "New York",
          "500 Fifth Avenue", "10110", 40.753, -73.981, "America/New_York", ("US",), 3, "store"),
    Place("madrid-sol", "Madrid Sol store", ServicePointKind.BRANCH, "ES", "Madrid",
          "Puerta del Sol, 1", "28013", 40.417, -3.703, "Europe/Madrid", ("ES",), 3, "store"),
    Place("milano-duomo", "Milano Duomo store", ServicePointKind.BRANCH, "IT", "Milano",
          "Piazza del Duomo 1", "20122", 45.464, 9.190, "Europe/Rome", ("IT",), 3, "store"),
    Place("lille-cc", "Lille contact centre", ServicePointKind.CALL_CENTRE, "FR", "Lille",
          "50 rue Nationale", "59000", 50.633, 3.058, "Europe/Paris", ("FR", "ES", "IT"), 8, None),
    Place("leipzig-cc", "Leipzig contact centre", ServicePointKind.CALL_CENTRE, "DE", "Leipzig",
          "Petersstraße 10", "04109", 51.338, 12.374, "Europe/Berlin", ("DE",), 8, None),
    Place("dublin-cc", "Dublin contact centre", ServicePointKind.CALL_CENTRE, "IE", "Dublin",
          "1 Grand Canal Quay", "D02 E677", 53.341, -6.239, "Europe/Dublin", ("GB", "US"), 8, None),
    Place("paris-gare-de-lyon-kiosk", "Kiosk, Paris Gare de Lyon", ServicePointKind.KIOSK, "FR",
          "Paris", "Place Louis-Armand", "75012", 48.845, 2.373, "Europe/Paris", ("FR",), 0, None),
    Place("berlin-hbf-kiosk", "Kiosk, Berlin Hauptbahnhof", ServicePointKind.KIOSK, "DE", "Berlin",
          "Europaplatz 1", "10557", 52.525, 13.369, "Europe/Berlin", ("DE",), 0, None),
    Place("london-kings-cross-kiosk", "Kiosk, London King's Cross", ServicePointKind.KIOSK, "GB",
          "London", "Euston Road", "N1 9AL", 51.530, -0.124, "Europe/London", ("GB",), 0, None),
    Place("web", "Web shop and customer portal", ServicePointKind.WEB, "FR", "Paris",
          "12 boulevard Haussmann", "75009", 48.873, 2.334, "UTC", (), 0, None),
    Place("app", "Mobile app", ServicePointKind.APP, "FR", "Paris",
          "12 boulevard Haussmann", "75009", 48.873, 2.334, "UTC", (), 0, None),
)


def _places(kind: ServicePointKind, country: str) -> tuple[str, ...]:
    return tuple(p.id for p in PLACES if p.kind is kind and country in p.serves)


_BRANCHES = {c.code: _places(ServicePointKind.BRANCH, c.code) for c in COUNTRIES}
_KIOSKS = {c.code: _places(ServicePointKind.KIOSK, c.code) for c in COUNTRIES}

TEAMS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("sales", "Sales", ("sales", "upsell", "quotes")),
    ("support", "Customer support", ("support", "billing", "delivery", "chat")),
    ("complaints", "Complaints and retention", ("complaints", "retention")),
    ("store", "Store staff", ("advice", "sales", "returns")),
)
_CALL_CENTRE_TEAMS = ("support", "support", "support", "support", "complaints", "complaints",
                      "sales", "sales")


def _agent_ids(place: Place) -> tuple[tuple[str, str], ...]:
    """(agent id, team) of everyone working at a place."""
    teams = (place.team,) * place.staff if place.team else _CALL_CENTRE_TEAMS[: place.staff]
    return tuple((f"{place.id}.{n:02d}", team) for n, team in enumerate(teams, start=1))


_STAFF = {p.id: _agent_ids(p) for p in PLACES}
_SALES_AGENTS = tuple(a for p in PLACES for a, team in _STAFF[p.id] if team == "sales")

_FX = {"EUR": Decimal("1"), "GBP": Decimal("0.86"), "USD": Decimal("1.08")}
CATALOGUE: dict[str, tuple[tuple[str, str], ...]] = {
    "electronics": (("USB cable", "9.99"), ("Headphones", "49.99"), ("Bluetooth speaker", "79.99"),
                    ("Smartwatch", "199.00"), ("Tablet", "349.00"), ("Laptop", "899.00")),
    "home": (("Candle", "6.50"), ("Cushion", "19.90"), ("Kettle", "39.90"),
             ("Coffee machine", "129.00"), ("Vacuum cleaner", "249.00"), ("Sofa", "799.00")),
    "garden": (("Seeds", "3.20"), ("Gloves", "12.00"), ("Hose", "29.00"), ("Barbecue", "159.00"),
               ("Lawn mower", "299.00")),
    "books": (("Paperback", "8.90"), ("Hardcover", "24.00"), ("Cookbook", "32.00"),
              ("Encyclopedia", "120.00")),
    "sports": (("Water bottle", "9.00"), ("Yoga mat", "25.00"), ("Running shoes", "110.00"),
               ("Bicycle", "650.00")),
    "fashion": (("Socks", "7.00"), ("T-shirt", "19.00"), ("Jeans", "69.00"), ("Coat", "189.00")),
    "beauty": (("Lip balm", "4.50"), ("Shampoo", "8.90"), ("Perfume", "85.00"),
               ("Hair dryer", "95.00")),
    "toys": (("Puzzle", "14.00"), ("Board game", "35.00"), ("Building set", "79.00"),
             ("Ride-on car", "220.00")),
}
_CATEGORIES = tuple(CATALOGUE)


@functools.cache
def _price_list(currency: str) -> dict[str, tuple[tuple[str, v.Money], ...]]:
    """Catalogue prices in one currency; Money is frozen, so every line shares these."""
    rate = _FX[currency]
    return {
        category: tuple(
            (product, v.Money((Decimal(price) * rate).quantize(Decimal("0.01")), currency))
            for product, price in products
        )
        for category, products in CATALOGUE.items()
    }


@functools.cache
def _ascii(text: str) -> str:
    """A name folded to what an e-mail local part holds: 'Lefèvre' -> 'lefevre'."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "", folded)


# ---- one customer's hidden truth ----


@attrs.frozen
class Profile:
    """What the generator knows about a customer and the data only hints at."""

    index: int
    id: str
    country: Country
    organisation: bool
    acquired: datetime
    buyer: bool
    rate: float
    """Purchases per year while alive."""
    death: datetime | None
    """When the customer silently stopped buying, if before `as_of`."""
    purchases: tuple[float, ...]
    """Purchase times in years after acquisition."""
    band: float
    """Where in each category's price range the customer buys (0 cheap .. 1 dear)."""
    favourites: tuple[str, ...]
    digital: float
    """Share of contacts the customer makes online rather than with staff."""

    @property
    def alive_until(self) -> datetime:
        return self.death or datetime.max.replace(tzinfo=UTC)

    def at(self, years: float) -> datetime:
        return self.acquired + timedelta(seconds=round(years * YEAR))


_RATE_SHAPE = 0.9
"""Gamma shape of purchase rates: below 1, so a few customers buy very often."""
_DROPOUT_SHAPE, _DROPOUT_SCALE = 1.0, 0.45
"""Gamma dropout rate per year: a mean lifetime of about two years, very uneven."""
_BUYERS = 0.88


def _draw_rate_and_lifetime(rng: random.Random) -> tuple[float, float]:
    rate = rng.gammavariate(_RATE_SHAPE, 1 / _RATE_SHAPE)
    lifetime = rng.expovariate(rng.gammavariate(_DROPOUT_SHAPE, _DROPOUT_SCALE))
    return rate, lifetime


@functools.cache
def _rate_scale(mean_purchases: float, history_years: float) -> float:
    """The factor on purchase rates that makes the expected purchases per customer `mean_purchases`.

    A buyer makes one purchase at acquisition and then Poisson(rate * years alive)
    more, so the expectation is linear in the factor and one fixed sample solves it.
    """
    repeats = mean_purchases / _BUYERS - 1
    if repeats <= 0:
        return 0.0
    rng = random.Random(20_240_601)
    total = 0.0
    samples = 20_000
    for _ in range(samples):
        rate, lifetime = _draw_rate_and_lifetime(rng)
        total += rate * min(lifetime, rng.random() * history_years)
    return repeats / (total / samples)


# ---- the base ----

def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValidationError(attribute.name, value, "must be a positive timedelta")


_PROFILE, _CUSTOMER, _PURCHASES, _LINES, _INTERACTIONS, _CASES, _OPPORTUNITIES, _STAFF_STREAM = range(8)


@attrs.frozen
class SyntheticBase:
    """A customer base of `size` customers, the same for the same arguments.

    Every `*s()` method is a generator: it holds one customer's records at a time.
    """

    size: int = attrs.field(default=1_000, validator=v.in_range(0, 2**40 - 1))
    seed: int = attrs.field(default=0, validator=v.in_range(0, 2**62))
    as_of: datetime = attrs.field(default=AS_OF, converter=v.as_utc, validator=v.is_utc)
    history: timedelta = attrs.field(default=timedelta(days=3 * 365), validator=_positive)
    """How far back the oldest customer was acquired."""
    purchases_per_customer: float = attrs.field(default=4.0, validator=v.in_range(0, 10_000))

    def _rng(self, index: int, stream: int) -> random.Random:
        return random.Random(((self.seed << 40 | index) << 3) | stream)

    # -- places and staff --

    def service_points(self) -> list[ServicePoint]:
        return [
            ServicePoint(
                id=p.id, name=p.name, kind=p.kind,
                location=Location(
                    PostalAddress(p.country, (p.street,), p.city, p.postal_code, kind="work"),
                    p.latitude, p.longitude, p.timezone,
                ),
            )
            for p in PLACES
        ]

    def teams(self) -> list[Team]:
        return [Team(id, name, frozenset(skills)) for id, name, skills in TEAMS]

    def agents(self) -> list[Agent]:
        rng = self._rng(0, _STAFF_STREAM)
        skills = {id: frozenset(s) for id, _, s in TEAMS}
        found = []
        for place in PLACES:
            speaks = place.serves or tuple(c.code for c in COUNTRIES)
            for agent_id, team in _STAFF[place.id]:
                country = _BY_CODE[_pick(rng, speaks)]
                first, last = _pick(rng, country.first_names), _pick(rng, country.last_names)
                languages = {f"lang.{_BY_CODE[c].language[:2]}" for c in speaks}
                found.append(Agent(
                    id=agent_id, name=f"{first} {last}", team=team, service_point=place.id,
                    skills=skills[team] | languages,
                    capacity=3 if "chat" in skills[team] else 1,
                    email=f"{_ascii(first)}.{_ascii(last)}.{agent_id}@staff.example.com",
                    phone_uri=f"sip:{agent_id}@pbx.example.com",
                ))
        return found

    # -- hidden profiles --

    def profile(self, index: int) -> Profile:
        """The hidden truth about customer `index` (0 <= index < size)."""
        rng = self._rng(index, _PROFILE)
        id = f"{rng.getrandbits(128):032x}"
        roll = rng.random() * _COUNTRY_WEIGHTS[-1]
        country = COUNTRIES[next(i for i, w in enumerate(_COUNTRY_WEIGHTS) if roll < w)]
        organisation = rng.random() < 0.06
        history_years = self.history.total_seconds() / YEAR
        rate, lifetime = _draw_rate_and_lifetime(rng)
        age = rng.random() * history_years
        acquired = self.as_of - timedelta(seconds=round(age * YEAR))
        buyer = rng.random() < _BUYERS
        rate *= _rate_scale(self.purchases_per_customer, history_years)
        times: list[float] = []
        if buyer:
            t = 0.0
            end = min(lifetime, age)
            while t < end:
                times.append(t)
                t += rng.expovariate(rate) if rate > 0 else math.inf
        death = acquired + timedelta(seconds=round(lifetime * YEAR)) if lifetime < age else None
        favourites = tuple(rng.sample(_CATEGORIES, 1 + int(rng.random() * 3)))
        return Profile(
            index=index, id=id, country=country, organisation=organisation, acquired=acquired,
            buyer=buyer, rate=rate, death=death, purchases=tuple(times),
            band=rng.triangular(0, 1, 0.3), favourites=favourites, digital=rng.triangular(0, 1, 0.5),
        )

    def profiles(self) -> Iterator[Profile]:
        return (self.profile(index) for index in range(self.size))

    # -- the records --

    def records(self) -> Iterator[Customer | Purchase | Interaction]:
        """What `crm.bulk_import` takes: every customer, then every purchase, then every interaction."""
        yield from self.customers()
        yield from self.purchases()
        yield from self.interactions()

    def customers(self) -> Iterator[Customer]:
        for profile in self.profiles():
            yield self._customer(profile)

    def purchases(self) -> Iterator[Purchase]:
        for profile in self.profiles():
            yield from self._purchases(profile)

    def interactions(self) -> Iterator[Interaction]:
        for profile in self.profiles():
            yield from self._interactions(profile)

    def cases(self) -> Iterator[Case]:
        for profile in self.profiles():
            yield from self._cases(profile)

    def opportunities(self) -> Iterator[Opportunity]:
        for profile in self.profiles():
            yield from self._opportunities(profile)

    def load(self, crm: CRM, *, watch: Callable[[Any], None] | None = None) -> None:
        """Put the whole base into `crm` through its public API.

        Places and staff first, then the bulk records in one import, then cases and
        opportunities in one transaction. `watch` sees every record on its way in.
        """
        def seen(items: Iterable[T]) -> Iterator[T]:
            for item in items:
                if watch is not None:
                    watch(item)
                yield item

        with crm.transaction():
            for point in seen(self.service_points()):
                crm.service_points.add(point)
            for team in seen(self.teams()):
                crm.teams.add(team)
            for agent in seen(self.agents()):
                crm.agents.add(agent)
        crm.bulk_import(seen(self.records()))
        with crm.transaction():
            for case in seen(self.cases()):
                crm.cases.add(case)
            for opportunity in seen(self.opportunities()):
                crm.opportunities.add(opportunity)

    # -- one customer at a time --

    def _customer(self, p: Profile) -> Customer:
        rng = self._rng(p.index, _CUSTOMER)
        c = p.country
        city = c.cities[int(rng.random() * len(c.cities))]
        first, last = _pick(rng, c.first_names), _pick(rng, c.last_names)
        domain = _pick(rng, ("example.com", "example.org", "example.net", "mail.example.com"))
        if p.organisation:
            trade = _pick(rng, ("Conseil", "Partners", "Logistik", "Studio", "Group"))
            name = f"{last} {trade} {c.company_suffix}"
            emails: tuple[str, ...] = (f"info.{_ascii(last)}{p.index}@{domain}",)
            birth = None
        else:
            name = f"{first} {last}"
            emails = (f"{_ascii(first)}.{_ascii(last)}{p.index}@{domain}",)
            if rng.random() < 0.15:
                emails += (f"{_ascii(first)[:1]}{_ascii(last)}{p.index}@work.example.com",)
            elif rng.random() < 0.3:
                emails = ()
            birth = (self.as_of - timedelta(days=rng.randint(18 * 365, 85 * 365))).date()
        phones = tuple(dict.fromkeys(
            _pick(rng, c.mobile_prefixes) + f"{rng.randrange(10**c.digits):0{c.digits}d}"
            for _ in range(0 if rng.random() < 0.1 else 1 if rng.random() < 0.8 else 2)
        ))
        address = PostalAddress(
            c.code, (c.street(rng),), city.name, _pick(rng, city.postal_codes), city.region,
            kind="work" if p.organisation else "home",
        )
        lifecycle = self._lifecycle(p, rng)
        tier = self._tier(p) if p.buyer else None
        tags = {t for t, share in _TAGS if rng.random() < share}
        if p.organisation:
            tags.add("b2b")
        if tier == "platinum":
            tags.add("vip")
        updated = p.acquired + (self.as_of - p.acquired) * rng.random()
        home = (_pick(rng, _BRANCHES[c.code]) if rng.random() > p.digital
                else "app" if rng.random() < 0.35 else "web")
        points = int(len(p.purchases) * 40 * rng.random())
        attributes: dict[str, v.AttributeValue] = {"loyalty_points": points}
        if p.organisation:
            attributes["credit_limit"] = Decimal(rng.choice((1_000, 5_000, 20_000)))
            attributes["vat_registered"] = True
        else:
            attributes["first_visit"] = p.acquired.date()
        return Customer(
            id=p.id, name=name, kind=PartyKind.ORGANISATION if p.organisation else PartyKind.PERSON,
            emails=emails, phones=phones, addresses=(address,), birth_date=birth,
            language=c.language, lifecycle=lifecycle, tier=tier, tags=frozenset(tags),
            attributes=attributes, external_ids={"loyalty": p.id[:16].upper()},
            consents=self._consents(p, rng, bool(emails), bool(phones)), service_point=home,
            created_at=p.acquired, updated_at=updated,
        )

    def _lifecycle(self, p: Profile, rng: random.Random) -> LifecycleStage:
        if not p.buyer:
            return LifecycleStage.LEAD if rng.random() < 0.6 else LifecycleStage.PROSPECT
        noticed = p.death is not None and self.as_of - p.death > timedelta(days=180)
        if noticed and rng.random() < 0.5:
            return LifecycleStage.FORMER_CUSTOMER
        return LifecycleStage.CUSTOMER

    def _tier(self, p: Profile) -> str:
        """Tiers reward past spending: what a loyalty programme would really know."""
        value = len(p.purchases) * (0.5 + p.band)
        if value >= 30:
            return "platinum"
        if value >= 12:
            return "gold"
        return "silver" if value >= 4 else "bronze"

    def _consents(self, p: Profile, rng: random.Random, email: bool, phone: bool) -> tuple[Consent, ...]:
        channels = [Channel.LETTER] + ([Channel.EMAIL] if email else []) + ([Channel.PHONE] if phone else [])
        found = []
        for channel in channels:
            if rng.random() < 0.7:
                at = p.acquired + (self.as_of - p.acquired) * rng.random() * 0.2
                status = ConsentStatus.GRANTED if rng.random() < 0.75 else ConsentStatus.WITHDRAWN
                source = _pick(rng, ("web-form", "store", "call-centre", "app"))
                found.append(Consent("marketing", channel, status, at, source))
        return tuple(found)

    def _orders(self, p: Profile) -> Iterator[tuple[str, datetime, Channel, str]]:
        """(id, time, channel, service point) of each purchase; lines come from `_purchases`."""
        rng = self._rng(p.index, _PURCHASES)
        call_centre = p.country.call_centre
        branches = _BRANCHES[p.country.code]
        for t in p.purchases:
            id = f"{rng.getrandbits(128):032x}"
            roll = rng.random()
            if roll < p.digital:
                channel, place = (Channel.APP, "app") if rng.random() < 0.4 else (Channel.PORTAL, "web")
            elif roll < p.digital + (1 - p.digital) * 0.15:
                channel, place = Channel.PHONE, call_centre
            else:
                channel, place = Channel.VISIT, _pick(rng, branches)
            at = p.at(t)
            if channel.family is ChannelFamily.OPERATIONAL:
                at = _daytime(at, p.acquired, self.as_of)
            yield id, at, channel, place

    def _purchases(self, p: Profile) -> Iterator[Purchase]:
        rng = self._rng(p.index, _LINES)
        prices = _price_list(p.country.currency)
        for id, at, channel, place in self._orders(p):
            lines = []
            for _ in range(_pick_weighted(rng, _LINE_COUNTS)):
                category = _pick(rng, p.favourites) if rng.random() < 0.75 else _pick(rng, _CATEGORIES)
                products = prices[category]
                slot = int(p.band * len(products) + rng.gauss(0, 0.8))
                product, price = products[min(max(slot, 0), len(products) - 1)]
                lines.append(OrderLine(product, price, _pick_weighted(rng, _QUANTITIES), category))
            yield Purchase(id, p.id, at, tuple(lines), channel, place)

    def _interactions(self, p: Profile) -> list[Interaction]:
        rng = self._rng(p.index, _INTERACTIONS)
        make = _Contacts(p, rng, self.as_of)
        end = min(p.alive_until, self.as_of)
        for _id, at, channel, place in self._orders(p):
            if channel is Channel.VISIT:
                make(Channel.VISIT, Direction.INBOUND, at, place, "In-store purchase", "sale")
            elif channel is Channel.PHONE:
                make(Channel.PHONE, Direction.INBOUND, at, place, "Order by phone", "sale")
            elif rng.random() < 0.3:
                make(Channel.EMAIL, Direction.OUTBOUND, at + timedelta(minutes=2),
                     p.country.call_centre, "Your order confirmation", None)
        if not p.buyer:
            for _ in range(1 + int(rng.random() * 3)):
                at = p.acquired + (self.as_of - p.acquired) * rng.random() * 0.5
                channel = _pick_weighted(rng, _SALES_CHANNELS)
                outcome = _pick(rng, ("interested", "callback", "not_interested", "no_answer"))
                make(channel, Direction.OUTBOUND, at, self._place(channel, p, rng),
                     _pick(rng, _SALES_SUBJECTS), outcome)
        years_alive = max((end - p.acquired).total_seconds(), 0) / YEAR
        for _ in range(_poisson(rng, years_alive * (1 + 6 * p.digital))):
            at = p.acquired + (end - p.acquired) * rng.random()
            channel = _pick_weighted(rng, _SELF_SERVICE)
            if channel is Channel.KIOSK and not _KIOSKS[p.country.code]:
                channel = Channel.PORTAL
            place = self._place(channel, p, rng)
            subject, outcome = _SELF_SERVICE_SUBJECTS[channel][int(rng.random() * 3)]
            make(channel, Direction.INBOUND, at, place, subject, outcome)
        for _ in range(_poisson(rng, years_alive * 0.6)):
            at = p.acquired + (end - p.acquired) * rng.random()
            channel = _pick_weighted(rng, _SERVICE_CHANNELS)
            make(channel, Direction.INBOUND, at, self._place(channel, p, rng), _pick(rng, _SERVICE_SUBJECTS),
                 _pick(rng, ("resolved", "info_given", "callback", "escalated")))
        for case in self._cases(p):
            for n in range(case.contacts):
                span = (case.resolved_at or self.as_of) - case.opened_at
                at = case.opened_at + span * (n / case.contacts)
                channel = case.channel or Channel.PHONE
                make(channel, Direction.INBOUND if n == 0 else Direction.OUTBOUND, at,
                     case.service_point, case.subject, "case_contact", case=case)
        return sorted(make.made, key=lambda i: i.occurred_at)

    def _place(self, channel: Channel, p: Profile, rng: random.Random) -> str:
        """Where a contact on this channel happens for this customer."""
        if channel is Channel.VISIT:
            return _pick(rng, _BRANCHES[p.country.code])
        if channel is Channel.KIOSK:
            return _pick(rng, _KIOSKS[p.country.code])
        return {Channel.PORTAL: "web", Channel.APP: "app"}.get(channel, p.country.call_centre)

    def _cases(self, p: Profile) -> list[Case]:
        rng = self._rng(p.index, _CASES)
        end = min(p.alive_until, self.as_of)
        years_alive = max((end - p.acquired).total_seconds(), 0) / YEAR
        opened = [
            (p.acquired + (end - p.acquired) * rng.random(), _pick_weighted(rng, _CASE_KINDS), True)
            for _ in range(_poisson(rng, years_alive * 0.3))
        ]
        if p.death is not None and rng.random() < 0.6:
            before = p.death - timedelta(days=rng.uniform(3, 60))
            opened.append((max(p.acquired, before), CaseKind.COMPLAINT, True))
        if p.death is None and rng.random() < 0.02:
            # the current backlog: cases nobody has handled yet
            recent = self.as_of - timedelta(days=rng.uniform(0, 21))
            opened.append((max(p.acquired, recent), _pick_weighted(rng, _CASE_KINDS), False))
        found = []
        for at, kind, handled in sorted(opened):
            at = at.replace(microsecond=0)
            priority = _pick_weighted(rng, _PRIORITIES[kind])
            sla = Cases.SLA[priority]
            done = at + sla * rng.lognormvariate(-0.6, 0.8) if handled else None
            channel = _pick_weighted(rng, _SERVICE_CHANNELS)
            place = self._place(channel, p, rng)
            agents = [a for a, team in _STAFF[place] if team in ("support", "complaints", "store")]
            subject = _pick(rng, _CASE_SUBJECTS[kind])
            contacts = 1 if rng.random() < 0.6 else rng.randint(2, 4)
            if done is not None and done <= self.as_of:
                status = CaseStatus.RESOLVED if rng.random() < 0.6 else CaseStatus.CLOSED
                resolved, resolution = done.replace(microsecond=0), _pick(rng, _RESOLUTIONS[kind])
            else:
                status = CaseStatus.IN_PROGRESS if rng.random() < 0.6 else CaseStatus.OPEN
                resolved, resolution = None, ""
            found.append(Case(
                id=f"{rng.getrandbits(128):032x}", customer_id=p.id, kind=kind, subject=subject,
                opened_at=at, priority=priority, status=status, sla_due=at + sla,
                resolved_at=resolved, resolution=resolution, channel=channel, service_point=place,
                agent=_pick(rng, agents), contacts=contacts,
            ))
        return found

    def _opportunities(self, p: Profile) -> Iterator[Opportunity]:
        rng = self._rng(p.index, _OPPORTUNITIES)
        chance = 0.35 if p.organisation else 0.04
        count = (2 if rng.random() < 0.3 else 1) if rng.random() < chance else 0
        prices = _price_list(p.country.currency)
        for _ in range(count):
            source = _pick(rng, ("web", "referral", "event", "cold_call", "partner"))
            size = _pick(rng, ("small", "medium", "large")) if p.organisation else "individual"
            industry = _pick(rng, _INDUSTRIES) if p.organisation else "consumer"
            win = 0.25 + 0.2 * (source in ("referral", "partner")) + 0.1 * (size == "large")
            win -= 0.1 * (source == "cold_call")
            if rng.random() < win:
                path = [*_OPEN_STAGES, Stage.WON]
            else:
                path = [*_OPEN_STAGES[: 1 + int(rng.random() * len(_OPEN_STAGES))], Stage.LOST]
            owner = _pick(rng, _SALES_AGENTS)
            start = max(p.acquired, self.as_of - timedelta(days=365))
            at = (start + (self.as_of - start) * rng.random()).replace(microsecond=0)
            history = []
            for stage in path:
                if at > self.as_of:
                    break
                history.append(StageChange(stage, at, owner))
                at += timedelta(seconds=round(rng.expovariate(1 / 30) * 86_400))
            category = _pick(rng, p.favourites)
            product, price = prices[category][-1 if p.organisation else int(p.band * len(prices[category]))]
            quantity = rng.randint(5, 200) if p.organisation else 1
            yield Opportunity(
                id=f"{rng.getrandbits(128):032x}", customer_id=p.id, title=f"{product} x{quantity}",
                stage=history[-1].stage, history=tuple(history), amount=price * quantity,
                kind=OpportunityKind.NEW if not p.buyer else _pick_weighted(rng, _OPPORTUNITY_KINDS),
                product=product, owner=owner, source=source,
                attributes={"industry": industry, "size": size},
            )


class _Contacts:
    """Builds one customer's interactions with agents, durations, scores and references."""

    def __init__(self, p: Profile, rng: random.Random, as_of: datetime) -> None:
        self.p = p
        self.rng = rng
        self.as_of = as_of
        self.made: list[Interaction] = []
        self.unhappy_from = p.death - timedelta(days=90) if p.death else None

    def __call__(
        self, channel: Channel, direction: Direction, at: datetime, place: str | None,
        subject: str, outcome: str | None, case: Case | None = None,
    ) -> None:
        rng = self.rng
        staff = _STAFF.get(place or "", ()) if channel.family is ChannelFamily.OPERATIONAL else ()
        staffed = bool(staff)
        agent = case.agent if case else _pick(rng, [a for a, _ in staff]) if staff else None
        satisfaction = nps = None
        if staffed and direction is Direction.INBOUND and rng.random() < 0.3:
            unhappy = (self.unhappy_from is not None and at >= self.unhappy_from) or (
                case is not None and case.kind is CaseKind.COMPLAINT)
            mood = rng.gauss(2.0 if unhappy else 4.1, 0.9)
            satisfaction = min(5, max(1, round(mood)))
            if rng.random() < 0.3:
                nps = min(10, max(0, round(mood * 2.2 + rng.gauss(0, 1.2))))
        lengths = _DURATIONS.get(channel)
        duration = (timedelta(seconds=round(lengths * rng.lognormvariate(0, 0.5)))
                    if lengths else None)
        token = f"{rng.getrandbits(96):024x}"
        reference = (f"<{token}@mail.example.com>" if channel is Channel.EMAIL
                     else f"{token}@pbx.example.com" if channel is Channel.PHONE else None)
        self.made.append(Interaction(
            id=f"{rng.getrandbits(128):032x}", customer_id=self.p.id, channel=channel,
            direction=direction,
            occurred_at=_daytime(at, self.p.acquired, self.as_of) if staff else at.replace(microsecond=0),
            service_point=place,
            agent=agent, duration=duration, subject=subject, outcome=outcome,
            satisfaction=satisfaction, nps=nps, case_id=case.id if case else None,
            reference=reference,
        ))


def _daytime(at: datetime, earliest: datetime, latest: datetime) -> datetime:
    """The same day moved into opening hours (08:00 to 20:00), kept within the bounds."""
    moved = at.replace(hour=at.hour if 8 <= at.hour < 20 else 8 + at.hour % 12, microsecond=0)
    return min(max(moved, earliest), latest)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _pick_weighted(rng: random.Random, table: tuple[tuple[Any, ...], tuple[float, ...]]) -> Any:
    items, cumulative = table
    roll = rng.random() * cumulative[-1]
    for item, bound in zip(items, cumulative, strict=True):
        if roll < bound:
            return item
    return items[-1]


def _weights(*pairs: tuple[Any, float]) -> tuple[tuple[Any, ...], tuple[float, ...]]:
    return tuple(p[0] for p in pairs), tuple(itertools.accumulate(p[1] for p in pairs))


_TAGS = (("newsletter", 0.4), ("loyalty-card", 0.3), ("eco", 0.1), ("student", 0.08),
         ("family", 0.2), ("paperless", 0.25))
_LINE_COUNTS = _weights((1, 50), (2, 28), (3, 14), (4, 8))
_QUANTITIES = _weights((1, 75), (2, 18), (3, 7))
_SALES_CHANNELS = _weights((Channel.PHONE, 50), (Channel.EMAIL, 35), (Channel.VISIT, 10), (Channel.VIDEO, 5))
_SALES_SUBJECTS = ("Welcome offer", "Follow-up call", "Product demo", "Quote follow-up")
_SELF_SERVICE = _weights((Channel.PORTAL, 45), (Channel.APP, 35), (Channel.KIOSK, 10), (Channel.IVR, 10))
_SELF_SERVICE_SUBJECTS: dict[Channel, tuple[tuple[str, str], ...]] = {
    Channel.PORTAL: (("Viewed order history", "self_served"), ("Updated contact details", "self_served"),
                     ("Downloaded invoice", "self_served")),
    Channel.APP: (("Checked loyalty points", "self_served"), ("Browsed catalogue", "self_served"),
                  ("Tracked delivery", "self_served")),
    Channel.KIOSK: (("Printed receipt", "self_served"), ("Checked stock", "self_served"),
                    ("Collected order", "self_served")),
    Channel.IVR: (("Account balance", "self_served"), ("Opening hours", "self_served"),
                  ("Asked for an agent", "abandoned")),
}
_SERVICE_CHANNELS = _weights((Channel.PHONE, 40), (Channel.EMAIL, 25), (Channel.CHAT, 15),
                             (Channel.VISIT, 10), (Channel.LETTER, 5), (Channel.VIDEO, 5))
_SERVICE_SUBJECTS = ("Delivery status", "Invoice copy", "Change of address", "Product advice",
                     "Password reset", "Loyalty points", "Return conditions")
_DURATIONS = {Channel.PHONE: 300, Channel.VISIT: 900, Channel.VIDEO: 1200, Channel.CHAT: 480,
              Channel.IVR: 90}
_CASE_KINDS = _weights((CaseKind.COMPLAINT, 35), (CaseKind.REQUEST, 45), (CaseKind.INCIDENT, 20))
_PRIORITIES = {
    CaseKind.COMPLAINT: _weights((CasePriority.LOW, 10), (CasePriority.NORMAL, 45),
                                 (CasePriority.HIGH, 35), (CasePriority.URGENT, 10)),
    CaseKind.REQUEST: _weights((CasePriority.LOW, 30), (CasePriority.NORMAL, 60),
                               (CasePriority.HIGH, 10)),
    CaseKind.INCIDENT: _weights((CasePriority.NORMAL, 40), (CasePriority.HIGH, 40),
                                (CasePriority.URGENT, 20)),
}
_CASE_SUBJECTS = {
    CaseKind.COMPLAINT: ("Late delivery", "Damaged item", "Wrong invoice amount", "Unhelpful staff",
                         "Refund not received", "Product stopped working"),
    CaseKind.REQUEST: ("Change billing address", "Copy of invoice", "Close account",
                       "Update consent", "Return label"),
    CaseKind.INCIDENT: ("Cannot log in to the portal", "App crashes at checkout", "Payment declined",
                        "Kiosk out of order"),
}
_RESOLUTIONS = {
    CaseKind.COMPLAINT: ("Refund issued", "Replacement sent", "Apology and voucher", "Explained policy"),
    CaseKind.REQUEST: ("Done as asked", "Document sent", "Customer informed"),
    CaseKind.INCIDENT: ("Fixed", "Workaround given", "Duplicate of a known incident"),
}
_OPEN_STAGES = (Stage.QUALIFICATION, Stage.NEEDS_ANALYSIS, Stage.PROPOSAL, Stage.NEGOTIATION)
_OPPORTUNITY_KINDS = _weights((OpportunityKind.CROSS_SELL, 45), (OpportunityKind.UPSELL, 35),
                              (OpportunityKind.RENEWAL, 20))
_INDUSTRIES = ("retail", "manufacturing", "health", "education", "public", "tech")


__all__ = ["AS_OF", "CATALOGUE", "COUNTRIES", "PLACES", "Profile", "SyntheticBase"]
