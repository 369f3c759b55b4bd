"""A synthetic customer base with duplicates whose truth is known, to measure detection.

Each duplicate is a second record of a person, entered again with the noise real
entry brings: a typo in the name, first and last name swapped ("Smith, Ann"), a
nickname ("Bob" for Robert), the phone written in national format or left out,
another e-mail provider or none (e-mail addresses are unique, so a second record
never repeats the first one's address), a move to another address, a birth date
left blank. First names and half the surnames come from the per-country pools of
`crmcore.synthetic`, so namesakes (different people, one name) are common, as in real
bases; the other surnames come from a long tail, as real surnames do.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import attrs
import phonenumbers

from crmcore.lifecycle.duplicates import NICKNAMES
from crmcore.model import Customer, PostalAddress
from crmcore.synthetic import COUNTRIES, Country, _ascii

SHORT: dict[str, list[str]] = {}
for _short, _long in NICKNAMES.items():
    SHORT.setdefault(_long, []).append(_short)

DOMAINS = ("gmail.com", "yahoo.fr", "outlook.com", "web.de", "orange.fr", "icloud.com", "gmx.net")


@attrs.frozen
class Person:
    first: str
    last: str
    country: Country
    phone: str
    birth: date
    address: PostalAddress


@attrs.frozen
class NoisyBase:
    customers: tuple[Customer, ...]
    duplicates: frozenset[tuple[str, str]]
    """The true duplicate pairs (smaller id first)."""


SYLLABLES = ("ber", "lan", "mor", "tel", "vic", "dra", "sen", "gal", "rou", "kel", "bar", "tin",
             "mas", "ler", "don", "fen", "rik", "sol", "var", "pel", "nor", "quin", "des", "hal")


def _surname(rng: random.Random, country: Country) -> str:
    """Half from the country's common names, half from a long tail: real surnames are
    Zipf-distributed, so most people share theirs with few others in a base."""
    if rng.random() < 0.5:
        return rng.choice(country.last_names)
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3)))).capitalize()


def _person(rng: random.Random) -> Person:
    country = rng.choice(COUNTRIES)
    number = rng.choice(country.mobile_prefixes) + "".join(
        rng.choice("0123456789") for _ in range(country.digits))
    return Person(
        rng.choice(country.first_names), _surname(rng, country), country, number,
        date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 65)), _address(rng, country),
    )


def _address(rng: random.Random, country: Country) -> PostalAddress:
    city = rng.choice(country.cities)
    return PostalAddress(country.code, (country.street(rng),), city.name, rng.choice(city.postal_codes))


def _email(rng: random.Random, first: str, last: str, taken: set[str]) -> str:
    while True:
        style = rng.randrange(4)
        local = (f"{_ascii(first)}.{_ascii(last)}", f"{_ascii(first)[0]}{_ascii(last)}",
                 f"{_ascii(last)}{_ascii(first)[:3]}", f"{_ascii(first)}{_ascii(last)}")[style]
        local += str(rng.randrange(1, 1000)) if rng.random() < 0.7 else ""
        address = f"{local}@{rng.choice(DOMAINS)}"
        if address not in taken:
            taken.add(address)
            return address


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 2:
        return word[:i] + rng.choice("aeiou") + word[i:]
    return word[:i] + rng.choice("aeioumnrst") + word[i + 1:]


def _national(phone: str) -> str:
    parsed = phonenumbers.parse(phone)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def _record(id: str, name: str, emails: list[str], phones: list[str], person: Person,
            address: PostalAddress | None, birth: date | None) -> Customer:
    return Customer.new(name, id=id, emails=emails, phones=phones, region=person.country.code,
                        addresses=[address] if address else [], birth_date=birth)


def _again(rng: random.Random, id: str, person: Person, first_email: str, taken: set[str]) -> Customer:
    first, last = person.first, person.last
    if rng.random() < 0.25 and first.lower() in SHORT:
        first = rng.choice(SHORT[first.lower()]).capitalize()
    if rng.random() < 0.35:
        last = _typo(rng, last)
    elif rng.random() < 0.2:
        first = _typo(rng, first)
    order = rng.random()
    name = f"{last}, {first}" if order < 0.2 else f"{last} {first}" if order < 0.3 else f"{first} {last}"
    keep_phone = rng.random() < 0.65
    phones = [_national(person.phone) if rng.random() < 0.5 else person.phone] if keep_phone else []
    emails: list[str] = []
    roll = rng.random()
    if roll < 0.55 or not keep_phone:  # another provider, same local part
        local = first_email.split("@")[0]
        domain = rng.choice([d for d in DOMAINS if not first_email.endswith(d)])
        if f"{local}@{domain}" not in taken:
            taken.add(f"{local}@{domain}")
            emails.append(f"{local}@{domain}")
    elif roll < 0.75:
        emails.append(_email(rng, first, last, taken))
    address = _address(rng, person.country) if rng.random() < 0.3 else (
        None if rng.random() < 0.2 else person.address)
    birth = person.birth if rng.random() < 0.75 else None
    return _record(id, name, emails, phones, person, address, birth)


def noisy_base(people: int, duplicate_share: float = 0.2, seed: int = 1) -> NoisyBase:
    """`people` persons, a share of them entered twice with noise; ids are c000001, ..."""
    rng = random.Random(seed)
    taken: set[str] = set()
    customers: list[Customer] = []
    truth: set[tuple[str, str]] = set()
    for n in range(people):
        person = _person(rng)
        email = _email(rng, person.first, person.last, taken)
        first_id = f"c{len(customers) + 1:07d}"
        customers.append(_record(first_id, f"{person.first} {person.last}", [email], [person.phone],
                                 person, person.address, person.birth if rng.random() < 0.9 else None))
        if rng.random() < duplicate_share:
            second_id = f"c{len(customers) + 1:07d}"
            customers.append(_again(rng, second_id, person, email, taken))
            truth.add((first_id, second_id))
        del n
    rng.shuffle(customers)
    return NoisyBase(tuple(customers), frozenset(truth))
