"""Paraphrased reports of invented events, written for Storywatch's tests.

Each event is told by several outlets in different words; `NEIGHBOURS` are
reports on the same topics about other events (another town, another bank),
which must not join. Two fires in the same town on the same day are beyond a
bag of words; docs/stories.md says so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)

# (event, outlet, minutes after T0, title, text)
Report = tuple[str, str, int, str, str]

PARAPHRASES: list[Report] = [
    ("dam", "Valley Courier", 0,
     "Dam breach floods Marrowick as river bursts its banks",
     "A section of the Hollin dam gave way before dawn on Monday, sending water through "
     "the centre of Marrowick. Emergency crews evacuated 1,200 residents from low-lying "
     "streets and the regional governor declared a state of emergency. No deaths have been "
     "confirmed, but two people are missing."),
    ("dam", "Northern Ledger", 95,
     "Marrowick evacuated after Hollin reservoir wall collapses",
     "Hundreds of families fled their homes in Marrowick when the wall of the Hollin "
     "reservoir collapsed overnight. Rescue teams in boats moved about 1,200 people to "
     "shelters; the governor of the region announced an emergency. Officials said two "
     "residents were unaccounted for as floodwater filled the town centre."),
    ("dam", "Capital Wire", 240,
     "Two missing as flood from failed dam swamps Marrowick",
     "Floodwater poured into Marrowick after the Hollin dam failed early Monday. The "
     "governor declared an emergency, evacuation of 1,200 people continued into the "
     "afternoon, and police said two people remained missing. Engineers are inspecting "
     "what is left of the dam wall."),
    ("rates", "Market Daily", 30,
     "Bank of Eastland raises interest rate to 4.5% to fight inflation",
     "The Bank of Eastland lifted its benchmark rate by half a point to 4.5% on Monday, its "
     "third increase this year, saying inflation of 7.2% was too high. Governor Ilse "
     "Varga told reporters the bank was ready to raise borrowing costs again if prices "
     "kept climbing."),
    ("rates", "Evening Standard Post", 150,
     "Eastland central bank hikes borrowing costs again as prices soar",
     "Eastland's central bank increased borrowing costs for a third time this year, taking "
     "its key rate to 4.5% from 4%. Governor Ilse Varga said inflation, now 7.2%, had to "
     "come down and did not rule out a further rise. Mortgage holders face higher "
     "monthly payments."),
    ("rates", "Finance Observer", 300,
     "Varga: more hikes possible after Eastland rate rise to 4.5%",
     "Ilse Varga, governor of the Bank of Eastland, warned of more increases after the bank "
     "raised its main interest rate by 0.5 points to 4.5%. Annual inflation stands at "
     "7.2%, far above the 2% target, and the decision was the third hike of the year."),
    ("fire", "Harbour Times", 60,
     "Huge fire at Port Halden chemical plant, residents told to stay indoors",
     "A large fire broke out at the Kestrel Chemicals plant in Port Halden on Monday "
     "morning, sending black smoke over the harbour. Authorities told residents within "
     "three kilometres to keep windows closed. Forty firefighters fought the blaze and "
     "three workers were treated for smoke inhalation."),
    ("fire", "Coastal News", 180,
     "Port Halden blaze: Kestrel Chemicals workers hurt, smoke warning issued",
     "Three employees of Kestrel Chemicals were taken to hospital after fire swept through "
     "the company's Port Halden site. A plume of thick smoke drifted across the port and "
     "officials urged people nearby to stay inside with windows shut while 40 firefighters "
     "tackled the flames."),
]

NEIGHBOURS: list[Report] = [
    ("dam-other", "Valley Courier", 200,
     "River Tarn floods farmland near Keldby after heavy rain",
     "Days of heavy rain pushed the River Tarn over its banks near Keldby, flooding fields "
     "and closing two country roads. Farmers moved livestock to higher ground. The "
     "environment agency issued flood warnings for villages downstream but said no homes "
     "had been flooded."),
    ("rates-other", "Market Daily", 210,
     "Northland central bank cuts rates as economy slows",
     "The Reserve Bank of Northland cut its policy rate by a quarter point to 3% on Monday, "
     "citing weak factory output and falling retail sales. Inflation in Northland has "
     "eased to 2.1%, and governor Tomas Brekke said the cut would support jobs."),
    ("fire-other", "Harbour Times", 270,
     "Firefighters rescue crew from burning fishing boat off Elmsford",
     "Five fishermen were pulled from the sea when their trawler caught fire twelve miles "
     "off Elmsford. A coastguard helicopter and a lifeboat took part in the rescue. The "
     "cause of the engine room fire is not yet known."),
]

BACKGROUND: list[Report] = [
    ("bg-1", "Arts Weekly", 10, "City orchestra announces new season of concerts",
     "The city orchestra will open its season with a cycle of symphonies, its conductor "
     "said, adding that ticket prices for students would be frozen."),
    ("bg-2", "Sports Desk", 20, "Underdogs reach cup final after penalty shoot-out",
     "The second-division side beat the league leaders on penalties to reach the cup "
     "final for the first time in their history."),
    ("bg-3", "Tech Today", 40, "Phone maker recalls chargers over overheating risk",
     "A phone manufacturer recalled two million chargers after reports that some units "
     "overheated; customers can exchange them free of charge."),
    ("bg-4", "Health Post", 50, "Hospital waiting lists fall for the first time in years",
     "Waiting lists at public hospitals fell last quarter as more operating theatres "
     "opened in the evenings, the health ministry said."),
]


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)
