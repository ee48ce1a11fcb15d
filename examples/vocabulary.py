"""Vocabularies for the demo-data generator: names, titles, companies, pages, campaigns.

Kept apart from ``generate.py`` so the generator reads as the story of a lead, not as a word list.
Accents, apostrophes and local-language titles are deliberate: ingestion, matching and audience
hashing must cope with them. Weights are relative; the generator normalises them.
"""

from typing import NamedTuple

LINES = ("crm-suite", "analytics-cloud")


class Country(NamedTuple):
    """Everything the generator needs to make a plausible lead of one country."""

    weight: float
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[tuple[str, str, str], ...]  # (city, state, zip template with '#' digits)
    phones: tuple[str, ...]  # national and international formats, '#' = a digit, 'N' = a digit 2-9
    legal: tuple[str, ...]  # company legal-form suffixes
    tld: str
    personal_domains: tuple[str, ...]


_US_FIRST = (
    "James",
    "Mary",
    "Sean",
    "Chloe",
    "Zoë",
    "Michael",
    "Jennifer",
    "Daniel",
    "Aaliyah",
    "Kevin",
    "Emily",
    "Andrés",
)
_US_LAST = ("Smith", "Johnson", "Williams", "O'Brien", "Nguyen", "Patel", "García", "Kowalski", "Lee", "Chen", "Brown")
_DE_FIRST = ("Jürgen", "Lena", "Maximilian", "Sören", "Jörg", "Käthe", "Lukas", "Anna", "Günther", "Sophie", "Björn")
_DE_LAST = ("Müller", "Schröder", "Weiß", "Köhler", "Groß", "Schäfer", "Fischer", "Meyer", "Wagner", "Becker")
_FR_FIRST = (
    "Zoë",
    "Hélène",
    "Céline",
    "François",
    "Jérôme",
    "Loïc",
    "Anaïs",
    "Gaël",
    "Benoît",
    "Amélie",
    "Théo",
    "Inès",
)
_FR_LAST = ("Dubois", "Lefèvre", "Martin", "Bernard", "Girard", "Fontaine", "Rousseau", "Lemaître", "Chevalier", "Noël")

COUNTRIES: dict[str, Country] = {
    "US": Country(
        26,
        _US_FIRST,
        _US_LAST,
        (
            ("New York", "NY", "100##"),
            ("San Francisco", "CA", "941##"),
            ("Austin", "TX", "787##"),
            ("Chicago", "IL", "606##"),
            ("Boston", "MA", "021##"),
        ),
        ("(N##) N##-####", "+1 N##-N##-####", "N##.N##.####", "+1N##N######"),
        ("Inc.", "LLC", "Corp."),
        ".com",
        ("gmail.com", "outlook.com", "yahoo.com", "icloud.com"),
    ),
    "GB": Country(
        9,
        ("Oliver", "Amelia", "Harry", "Isla", "Siobhán", "George", "Niamh", "Priya"),
        ("Smith", "Jones", "Taylor", "O'Connor", "Evans", "Walsh", "Khan", "Davies"),
        (
            ("London", "", "EC1A #AA"),
            ("Manchester", "", "M# #BD"),
            ("Edinburgh", "", "EH# #NG"),
            ("Bristol", "", "BS# #QJ"),
        ),
        ("+44 20 #### ####", "020 #### ####", "07### ######", "+44 7### ######"),
        ("Ltd", "plc", "LLP"),
        ".co.uk",
        ("gmail.com", "hotmail.co.uk", "btinternet.com"),
    ),
    "FR": Country(
        12,
        _FR_FIRST,
        _FR_LAST,
        (
            ("Paris", "Île-de-France", "750##"),
            ("Lyon", "Auvergne-Rhône-Alpes", "6900#"),
            ("Nantes", "Pays de la Loire", "440##"),
            ("Toulouse", "Occitanie", "310##"),
            ("Lille", "Hauts-de-France", "590##"),
        ),
        ("+33 6 ## ## ## ##", "06 ## ## ## ##", "+33 1 ## ## ## ##", "01.##.##.##.##", "+33(0)#########"),
        ("SAS", "SA", "SARL"),
        ".fr",
        ("gmail.com", "orange.fr", "free.fr", "laposte.net"),
    ),
    "DE": Country(
        11,
        _DE_FIRST,
        _DE_LAST,
        (
            ("Berlin", "BE", "10###"),
            ("München", "BY", "80###"),
            ("Hamburg", "HH", "20###"),
            ("Köln", "NW", "50###"),
            ("Düsseldorf", "NW", "40###"),
        ),
        ("+49 30 #######", "030 #######", "+49 (0)89 ########", "0171 #######", "+49 151 ########"),
        ("GmbH", "AG", "GmbH & Co. KG"),
        ".de",
        ("gmx.de", "web.de", "gmail.com", "t-online.de"),
    ),
    "ES": Country(
        5,
        ("José", "María", "Jesús", "Sofía", "Álvaro", "Iñaki", "Nuria", "Raúl", "Lucía"),
        ("García", "Núñez", "Martínez", "Peña", "Gómez", "Ibáñez", "López", "Fernández"),
        (
            ("Madrid", "Madrid", "280##"),
            ("Barcelona", "Cataluña", "080##"),
            ("Valencia", "Valencia", "460##"),
            ("Bilbao", "País Vasco", "480##"),
        ),
        ("+34 6## ## ## ##", "6## ### ###", "+34 91 ### ## ##"),
        ("S.L.", "S.A."),
        ".es",
        ("gmail.com", "hotmail.es", "yahoo.es"),
    ),
    "IT": Country(
        4,
        ("Niccolò", "Giulia", "Luca", "Francesca", "Davide", "Chiara", "Nicolò"),
        ("Rossi", "Bianchi", "Lucà", "Ferrari", "Esposito", "De Santis", "D'Amico"),
        (("Milano", "MI", "201##"), ("Roma", "RM", "001##"), ("Torino", "TO", "101##"), ("Bologna", "BO", "401##")),
        ("+39 02 #### ####", "3## ### ####", "+39 3## #######"),
        ("S.r.l.", "S.p.A."),
        ".it",
        ("gmail.com", "libero.it", "virgilio.it"),
    ),
    "NL": Country(
        4,
        ("Sanne", "Bram", "Daan", "Eva", "Maarten", "Fleur"),
        ("de Vries", "van den Berg", "Jansen", "van Dijk", "Bakker", "Visser"),
        (("Amsterdam", "NH", "10## AB"), ("Rotterdam", "ZH", "30## CD"), ("Utrecht", "UT", "35## EF")),
        ("+31 20 ### ####", "06-########", "+31 6 ########"),
        ("B.V.", "N.V."),
        ".nl",
        ("gmail.com", "ziggo.nl", "kpnmail.nl"),
    ),
    "BE": Country(
        2,
        ("Lotte", "Mathis", "Noémie", "Wout", "Chloé"),
        ("Peeters", "Janssens", "Dupont", "Lemaire", "Claes"),
        (("Bruxelles", "BRU", "10##"), ("Antwerpen", "VAN", "20##"), ("Gent", "VOV", "90##")),
        ("+32 2 ### ## ##", "04## ## ## ##", "+32 4## ## ## ##"),
        ("SRL", "NV", "BV"),
        ".be",
        ("gmail.com", "skynet.be", "telenet.be"),
    ),
    "CH": Country(
        2,
        ("Luca", "Léa", "Noah", "Mia", "Matthias", "Aurélie"),
        ("Meier", "Favre", "Keller", "Bühler", "Rochat", "Zürcher"),
        (("Zürich", "ZH", "80##"), ("Genève", "GE", "12##"), ("Basel", "BS", "40##")),
        ("+41 44 ### ## ##", "079 ### ## ##", "+41 79 ### ## ##"),
        ("AG", "SA", "GmbH"),
        ".ch",
        ("gmail.com", "bluewin.ch", "gmx.ch"),
    ),
    "SE": Country(
        2,
        ("Åsa", "Björn", "Märta", "Erik", "Linnéa", "Oskar"),
        ("Jönsson", "Åkesson", "Lindqvist", "Andersson", "Söderberg", "Nyström"),
        (("Stockholm", "AB", "11# ##"), ("Göteborg", "O", "41# ##"), ("Malmö", "M", "21# ##")),
        ("+46 8 ### ### ##", "07#-### ## ##", "+46 7# ### ## ##"),
        ("AB",),
        ".se",
        ("gmail.com", "telia.com", "hotmail.se"),
    ),
    "PL": Country(
        3,
        ("Łukasz", "Małgorzata", "Paweł", "Wojciech", "Zofia", "Agnieszka"),
        ("Kowalski", "Wiśniewski", "Wójcik", "Zieliński", "Dąbrowska", "Nowak"),
        (("Warszawa", "MZ", "00-###"), ("Kraków", "MA", "30-###"), ("Wrocław", "DS", "50-###")),
        ("+48 22 ### ## ##", "5## ### ###", "+48 5## ### ###"),
        ("Sp. z o.o.", "S.A."),
        ".pl",
        ("gmail.com", "wp.pl", "onet.pl"),
    ),
    "BR": Country(
        3,
        ("João", "Luíza", "Márcio", "Ana", "Thiago", "Beatriz"),
        ("Silva", "Conceição", "Gonçalves", "Araújo", "Souza", "Pereira"),
        (("São Paulo", "SP", "01###-###"), ("Rio de Janeiro", "RJ", "20###-###"), ("Curitiba", "PR", "80###-###")),
        ("+55 11 9####-####", "(11) 9####-####", "+55 21 #########"),
        ("Ltda.", "S.A."),
        ".com.br",
        ("gmail.com", "uol.com.br", "hotmail.com"),
    ),
    "CA": Country(
        4,
        ("Liam", "Émilie", "Noah", "Olivia", "Félix", "Charlotte"),
        ("Tremblay", "Roy", "Gagnon", "MacDonald", "Côté", "Wilson"),
        (("Toronto", "ON", "M5V #A#"), ("Montréal", "QC", "H2X #B#"), ("Vancouver", "BC", "V6B #C#")),
        ("(N##) N##-####", "+1 N##-N##-####", "N##-N##-####"),
        ("Inc.", "Ltd.", "Corp."),
        ".ca",
        ("gmail.com", "outlook.com", "videotron.ca"),
    ),
    "IN": Country(
        4,
        ("Aarav", "Priya", "Ananya", "Rohan", "Vikram", "Sneha"),
        ("Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Nair"),
        (("Bengaluru", "KA", "5600##"), ("Mumbai", "MH", "4000##"), ("Pune", "MH", "4110##")),
        ("+91 98### #####", "098### #####", "+91-80-########"),
        ("Pvt. Ltd.", "Ltd."),
        ".in",
        ("gmail.com", "yahoo.co.in", "rediffmail.com"),
    ),
    "AU": Country(
        2,
        ("Jack", "Matilda", "Lachlan", "Ruby", "Zoë"),
        ("Smith", "Wilson", "O'Neill", "Nguyen", "Taylor"),
        (("Sydney", "NSW", "20##"), ("Melbourne", "VIC", "30##"), ("Brisbane", "QLD", "40##")),
        ("+61 2 #### ####", "04## ### ###", "+61 4## ### ###"),
        ("Pty Ltd",),
        ".com.au",
        ("gmail.com", "bigpond.com", "outlook.com"),
    ),
    "JP": Country(
        2,
        ("Haruto", "Yui", "Sōta", "Aoi", "Ren"),
        ("Satō", "Suzuki", "Takahashi", "Itō", "Watanabe"),
        (("Tokyo", "13", "1##-####"), ("Osaka", "27", "5##-####")),
        ("+81 3-####-####", "03-####-####", "090-####-####"),
        ("K.K.", "Co., Ltd."),
        ".jp",
        ("gmail.com", "yahoo.co.jp"),
    ),
    # Markets the demo company does not serve (see the 'served market' fit rule).
    "RU": Country(
        1,
        ("Dmitry", "Olga", "Sergei", "Natalia"),
        ("Ivanov", "Smirnova", "Kuznetsov", "Popova"),
        (("Moscow", "MOW", "101###"),),
        ("+7 495 ###-##-##", "8 (495) ###-##-##"),
        ("OOO",),
        ".ru",
        ("mail.ru", "yandex.ru"),
    ),
    "IR": Country(
        0.3,
        ("Reza", "Sara", "Ali", "Maryam"),
        ("Hosseini", "Ahmadi", "Karimi", "Rezaei"),
        (("Tehran", "", "1####-#####"),),
        ("+98 21 #### ####",),
        ("Co.",),
        ".ir",
        ("gmail.com",),
    ),
}

# (title, weight, senior, function); function steers product interest: sales → CRM, data → analytics.
TITLES: tuple[tuple[str, float, bool, str], ...] = (
    ("Head of Sales", 3, True, "sales"),
    ("Head of Marketing", 3, True, "sales"),
    ("Head of Data", 2, True, "data"),
    ("Head of Revenue Operations", 1.5, True, "sales"),
    ("VP Sales", 2, True, "sales"),
    ("VP of Marketing", 1.5, True, "sales"),
    ("Vice President, Customer Success", 1, True, "sales"),
    ("Director of Sales", 2, True, "sales"),
    ("Marketing Director", 2, True, "sales"),
    ("Director, Business Intelligence", 1.5, True, "data"),
    ("Chief Revenue Officer", 0.8, True, "sales"),
    ("Chief Data Officer", 0.8, True, "data"),
    ("CEO", 1.2, True, "other"),
    ("CTO", 1, True, "data"),
    ("CFO", 0.8, True, "other"),
    ("Founder & CEO", 1, True, "other"),
    ("Directeur Commercial", 1, True, "sales"),
    ("Directrice Marketing", 0.8, True, "sales"),
    ("Directora de Ventas", 0.5, True, "sales"),
    ("Geschäftsführer", 0.8, True, "other"),
    ("Leiterin Vertrieb", 0.5, True, "sales"),
    ("Sales Manager", 6, False, "sales"),
    ("Marketing Manager", 6, False, "sales"),
    ("Account Executive", 5, False, "sales"),
    ("Sales Operations Analyst", 3, False, "sales"),
    ("Business Development Representative", 4, False, "sales"),
    ("Customer Success Manager", 3, False, "sales"),
    ("Responsable Marketing", 2, False, "sales"),
    ("BI Analyst", 4, False, "data"),
    ("Data Analyst", 5, False, "data"),
    ("Data Engineer", 4, False, "data"),
    ("Analytics Engineer", 2, False, "data"),
    ("Software Engineer", 5, False, "data"),
    ("Product Manager", 4, False, "other"),
    ("Chef de projet", 2, False, "other"),
    ("Consultant", 4, False, "other"),
    ("Office Manager", 2, False, "other"),
    ("Marketing Specialist", 3, False, "sales"),
    ("Assistant", 1.5, False, "other"),
    ("Sales Intern", 1, False, "sales"),
    ("Marketing Intern", 1, False, "sales"),
)
STUDENT_TITLES = ("Student", "student", "MBA Candidate", "Marketing Intern", "Data Science Intern")

# industry → (weight, words that make company names of that industry sound right)
INDUSTRIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "Software": (14, ("Software", "Labs", "Systems", "Cloud")),
    "Financial Services": (9, ("Capital", "Finance", "Partners", "Bank")),
    "Retail": (9, ("Retail", "Stores", "Market", "Brands")),
    "E-commerce": (6, ("Shop", "Direct", "Online", "Commerce")),
    "Manufacturing": (10, ("Industries", "Manufacturing", "Werke", "Components")),
    "Healthcare": (7, ("Health", "Medical", "Care", "Pharma")),
    "Logistics": (6, ("Logistics", "Freight", "Transport", "Supply")),
    "Telecommunications": (4, ("Telecom", "Networks", "Connect")),
    "Professional Services": (7, ("Consulting", "Advisory", "Group")),
    "Energy": (4, ("Energy", "Power", "Renewables")),
    "Media": (4, ("Media", "Studios", "Publishing")),
    "Education": (3, ("Academy", "Learning", "Institute")),
    "Government": (2, ("Agency", "Authority")),
    "Non-profit": (2, ("Foundation", "Trust")),
}
COMPANY_ROOTS = (
    "Nordwind", "Bluepeak", "Solaris", "Kestrel", "Helix", "Lumen", "Orbital", "Cobalt", "Vantage", "Meridian",
    "Aurora", "Granite", "Silverline", "Quantis", "Everest", "Brightwater", "Northstar", "Pinecrest", "Redwood",
    "Altitude", "Beacon", "Cascade", "Delta", "Ember", "Falcon", "Harbor", "Ionic", "Juniper", "Keystone", "Lighthouse",
    "Monarch", "Nimbus", "Oakridge", "Polaris", "Quartz", "Riverside", "Summit", "Tidewater", "Umbra", "Vertex",
    "Westgate", "Zenith", "Atlas", "Boréal", "Élan", "Fjord", "Hélios", "Sirius", "Tundra", "Voltaire",
)  # fmt: skip
COMPETITORS = (
    ("Salesforce", "salesforce.com"),
    ("HubSpot", "hubspot.com"),
    ("Pipedrive", "pipedrive.com"),
    ("Zoho", "zoho.com"),
)

OWNERS = (
    "claire.dubois@acme-cloud.example", "marc.weber@acme-cloud.example", "sofia.ruiz@acme-cloud.example",
    "tom.baker@acme-cloud.example", "ines.moreau@acme-cloud.example", "lukas.hoffmann@acme-cloud.example",
    "emma.jensen@acme-cloud.example", "raj.menon@acme-cloud.example",
)  # fmt: skip

FEATURES = {
    "crm-suite": ("pipeline", "contacts", "forecasting", "email-sequences", "integrations"),
    "analytics-cloud": ("dashboards", "connectors", "semantic-layer", "alerts", "embedded"),
}
BLOG = (
    "/blog/10-signs-your-pipeline-leaks", "/blog/what-is-lead-scoring", "/blog/data-stack-2026",
    "/blog/forecasting-without-spreadsheets", "/blog/gdpr-for-marketers", "/blog/dashboards-people-read",
)  # fmt: skip
BROWSE_PAGES = ("/", "/about", "/careers", "/events", "/docs/getting-started", "/docs/api", "/partners")
STORIES = ("/customers/nordwind-logistik", "/customers/helix-health", "/customers/bluepeak-retail")
ASSETS = {
    "crm-suite": (
        "whitepaper-crm-roi-2026.pdf", "whitepaper-sales-pipeline-benchmarks.pdf", "ebook-customer-360.pdf",
        "checklist-crm-migration.pdf", "case-study-nordwind.pdf", "datasheet-crm-suite.pdf",
    ),
    "analytics-cloud": (
        "whitepaper-modern-data-stack.pdf", "whitepaper-self-service-bi.pdf", "ebook-data-governance.pdf",
        "checklist-dashboard-design.pdf", "case-study-helix-health.pdf", "datasheet-analytics-cloud.pdf",
    ),
}  # fmt: skip
WEBINARS = {
    "crm-suite": ("crm-playbook-2026-05", "pipeline-hygiene-live", "forecasting-clinic-q3"),
    "analytics-cloud": ("bi-in-30-minutes", "data-quality-clinic", "semantic-layer-deep-dive"),
}
CAMPAIGNS = {
    "crm-suite": ("crm-nurture-01", "crm-nurture-02", "crm-webinar-invite", "crm-case-study", "crm-trial-ending"),
    "analytics-cloud": ("ac-nurture-01", "ac-nurture-02", "ac-webinar-invite", "ac-product-update", "ac-pricing"),
}
AD_CAMPAIGNS = ("2026-q3-linkedin", "google-search-brand", "g2-listing", "partner-newsletter", "retargeting-meta")
BROWSE_FORMS = ("newsletter", "content-gate", "event-signup")
BUYING_FORMS = ("contact-sales", "quote-request", "demo", "newsletter")

HUMAN_AGENTS = (
    "Microsoft Outlook 16.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0",
)
# Privacy proxies and link scanners: what ingestion must learn to flag as machine activity.
MACHINE_AGENTS = (
    "Mozilla/5.0 (Macintosh) AppleWebKit (KHTML, like Gecko) GoogleImageProxy",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
)
PREFETCH_AGENT = "Mozilla/5.0"  # Apple Mail Privacy Protection: a bare agent, within a second of delivery
SCANNER_AGENTS = ("Barracuda Sentinel (EE)", "Mimecast URL Protect")

ADJUSTMENTS = (
    (15, "met at trade show"),
    (10, "referral from partner"),
    (20, "strategic account"),
    (-15, "bad fit per SDR call"),
    (-25, "duplicate contact"),
    (-10, "no budget this year"),
)
