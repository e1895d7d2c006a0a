"""Countries mentioned in a text, by name, common short form or demonym.

Rules group by country ("a strike after a ceasefire, in the same country"),
and outlets name the same country in different ways: "Ukraine",
"Ukrainian", "Kyiv's". The table maps each spelling to one canonical name.
"""

from __future__ import annotations

import re
from functools import lru_cache

from monitor.stories.normalise import fold

_TABLE = """
Afghanistan: afghan, afghans, kabul
Albania: albanian, tirana
Algeria: algerian, algiers
Argentina: argentine, argentinian, buenos aires
Armenia: armenian, yerevan
Australia: australian, canberra
Austria: austrian, vienna
Azerbaijan: azerbaijani, baku
Bahrain: bahraini
Bangladesh: bangladeshi, dhaka
Belarus: belarusian, minsk
Belgium: belgian, brussels
Bolivia: bolivian
Bosnia and Herzegovina: bosnia, bosnian, sarajevo
Brazil: brazilian, brasilia
Bulgaria: bulgarian, sofia
Burkina Faso: burkinabe
Cambodia: cambodian, phnom penh
Cameroon: cameroonian
Canada: canadian, ottawa
Chad: chadian
Chile: chilean, santiago
China: chinese, beijing, prc
Colombia: colombian, bogota
Congo: congolese, kinshasa, drc
Croatia: croatian, zagreb
Cuba: cuban, havana
Cyprus: cypriot, nicosia
Czech Republic: czech, czechia, prague
Denmark: danish, copenhagen
Ecuador: ecuadorian, quito
Egypt: egyptian, cairo
Eritrea: eritrean
Estonia: estonian, tallinn
Ethiopia: ethiopian, addis ababa
Finland: finnish, helsinki
France: french, paris
Georgia: georgian, tbilisi
Germany: german, berlin
Ghana: ghanaian, accra
Greece: greek, athens
Guatemala: guatemalan
Haiti: haitian, port-au-prince
Hungary: hungarian, budapest
India: indian, new delhi
Indonesia: indonesian, jakarta
Iran: iranian, tehran
Iraq: iraqi, baghdad
Ireland: irish, dublin
Israel: israeli, israelis, jerusalem, tel aviv
Italy: italian, rome
Japan: japanese, tokyo
Jordan: jordanian, amman
Kazakhstan: kazakh, astana
Kenya: kenyan, nairobi
Kosovo: kosovar, pristina
Kuwait: kuwaiti
Kyrgyzstan: kyrgyz, bishkek
Latvia: latvian, riga
Lebanon: lebanese, beirut
Libya: libyan, tripoli
Lithuania: lithuanian, vilnius
Malaysia: malaysian, kuala lumpur
Mali: malian, bamako
Mexico: mexican, mexico city
Moldova: moldovan, chisinau
Mongolia: mongolian, ulaanbaatar
Morocco: moroccan, rabat
Mozambique: mozambican
Myanmar: burma, burmese, naypyidaw
Nepal: nepali, nepalese, kathmandu
Netherlands: dutch, the hague, amsterdam
New Zealand: new zealander, wellington
Nicaragua: nicaraguan, managua
Niger: nigerien, niamey
Nigeria: nigerian, abuja, lagos
North Korea: pyongyang, dprk
Norway: norwegian, oslo
Oman: omani, muscat
Pakistan: pakistani, islamabad
Palestine: palestinian, palestinians, gaza, west bank, ramallah
Panama: panamanian
Peru: peruvian, lima
Philippines: philippine, filipino, manila
Poland: polish, warsaw
Portugal: portuguese, lisbon
Qatar: qatari, doha
Romania: romanian, bucharest
Russia: russian, russians, moscow, kremlin, russian federation
Rwanda: rwandan, kigali
Saudi Arabia: saudi, saudis, riyadh, jeddah
Senegal: senegalese, dakar
Serbia: serbian, belgrade
Singapore: singaporean
Slovakia: slovak, bratislava
Slovenia: slovenian, ljubljana
Somalia: somali, mogadishu
South Africa: south african, pretoria, johannesburg
South Korea: south korean, seoul
South Sudan: south sudanese, juba
Spain: spanish, madrid
Sri Lanka: sri lankan, colombo
Sudan: sudanese, khartoum
Sweden: swedish, stockholm
Switzerland: swiss, bern, geneva
Syria: syrian, damascus
Taiwan: taiwanese, taipei
Tajikistan: tajik, dushanbe
Tanzania: tanzanian, dodoma
Thailand: thai, bangkok
Tunisia: tunisian, tunis
Turkey: turkish, turkiye, ankara, istanbul
Turkmenistan: turkmen, ashgabat
Uganda: ugandan, kampala
Ukraine: ukrainian, ukrainians, kyiv, kiev
United Arab Emirates: uae, emirati, abu dhabi, dubai
United Kingdom: uk, britain, british, great britain, london, downing street
United States: us, usa, u.s., u.s.a., america, american, americans, washington, white house
Uruguay: uruguayan, montevideo
Uzbekistan: uzbek, tashkent
Venezuela: venezuelan, caracas
Vietnam: vietnamese, hanoi
Yemen: yemeni, sanaa, houthi, houthis
Zambia: zambian, lusaka
Zimbabwe: zimbabwean, harare
"""

_WORD = re.compile(r"\w+(?:\.\w+)*\.?(?:['’]s)?")
_CASE_SENSITIVE = frozenset({"us", "uk", "uae", "drc", "prc", "dprk"})
"""Short forms that are only names in capitals ("US", not "us")."""


def _norm(word: str) -> str:
    """Folded, without trailing dots or a possessive: "Kyiv's" → "kyiv", "U.S." → "u.s"."""
    word = fold(word.strip())
    for suffix in ("'s", "’s"):
        word = word.removesuffix(suffix)
    return word.strip(".")


@lru_cache(maxsize=1)
def _index() -> tuple[dict[tuple[str, ...], str], int]:
    table: dict[tuple[str, ...], str] = {}
    for line in _TABLE.strip().splitlines():
        name, _, aliases = line.partition(":")
        for spelling in [name, *aliases.split(",")]:
            words = tuple(_norm(w) for w in spelling.split())
            if words:
                table[words] = name.strip()
    return table, max(len(k) for k in table)


def countries(text: str) -> list[str]:
    """Canonical names of the countries `text` mentions, in order of first mention.

    A name starts with a capital letter, so only capitalised words are folded
    and looked up: the cost is in the names a text has, not its length.
    """
    if text.islower():
        return []  # no capital letter, so no name
    table, longest = _index()
    firsts = _first_words()
    raw = _WORD.findall(text)
    found: dict[str, None] = {}
    i = 0
    while i < len(raw):
        word = raw[i]
        if not word[:1].isupper() or _norm_cached(word) not in firsts:
            i += 1
            continue
        if _norm_cached(word) in _CASE_SENSITIVE and not (word.isupper() or "." in word):
            i += 1
            continue
        for n in range(min(longest, len(raw) - i), 0, -1):
            name = table.get(tuple(_norm_cached(w) for w in raw[i:i + n]))
            if name:
                found.setdefault(name)
                i += n - 1
                break
        i += 1
    return list(found)


@lru_cache(maxsize=65536)
def _norm_cached(word: str) -> str:
    return _norm(word)


@lru_cache(maxsize=1)
def _first_words() -> frozenset[str]:
    return frozenset(key[0] for key in _index()[0])
