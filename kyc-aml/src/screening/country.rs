//! Country keys: lists print nationalities as English names ("Iran (Islamic Republic of)",
//! "Democratic People's Republic of Korea"), ISO codes ("IR") or demonyms ("Afghan"); customer
//! records carry ISO 3166-1 codes. Both sides are reduced to the alpha-2 code when the country
//! is known here, and to a normalised name otherwise, so equal countries compare equal.

/// (alpha-2, alpha-3, names and demonyms in lowercase ASCII letters and spaces).
const COUNTRIES: &[(&str, &str, &[&str])] = &[
    ("AF", "AFG", &["afghanistan", "afghan"]),
    ("AL", "ALB", &["albania", "albanian"]),
    ("DZ", "DZA", &["algeria", "algerian"]),
    ("AO", "AGO", &["angola", "angolan"]),
    ("AR", "ARG", &["argentina", "argentine", "argentinian"]),
    ("AM", "ARM", &["armenia", "armenian"]),
    ("AU", "AUS", &["australia", "australian"]),
    ("AT", "AUT", &["austria", "austrian"]),
    ("AZ", "AZE", &["azerbaijan", "azerbaijani"]),
    ("BH", "BHR", &["bahrain", "bahraini"]),
    ("BD", "BGD", &["bangladesh", "bangladeshi"]),
    ("BY", "BLR", &["belarus", "belarusian", "byelorussia"]),
    ("BE", "BEL", &["belgium", "belgian"]),
    (
        "BA",
        "BIH",
        &["bosnia and herzegovina", "bosnia", "bosnian"],
    ),
    ("BR", "BRA", &["brazil", "brazilian"]),
    ("BG", "BGR", &["bulgaria", "bulgarian"]),
    ("BF", "BFA", &["burkina faso", "burkinabe"]),
    ("BI", "BDI", &["burundi", "burundian"]),
    ("KH", "KHM", &["cambodia", "cambodian"]),
    ("CM", "CMR", &["cameroon", "cameroonian"]),
    ("CA", "CAN", &["canada", "canadian"]),
    (
        "CF",
        "CAF",
        &["central african republic", "central african"],
    ),
    ("TD", "TCD", &["chad", "chadian"]),
    (
        "CN",
        "CHN",
        &["china", "chinese", "people s republic of china"],
    ),
    ("CO", "COL", &["colombia", "colombian"]),
    (
        "CG",
        "COG",
        &["congo", "republic of the congo", "congolese"],
    ),
    (
        "CD",
        "COD",
        &[
            "democratic republic of the congo",
            "dr congo",
            "drc",
            "zaire",
        ],
    ),
    ("HR", "HRV", &["croatia", "croatian"]),
    ("CU", "CUB", &["cuba", "cuban"]),
    ("CY", "CYP", &["cyprus", "cypriot"]),
    ("CZ", "CZE", &["czechia", "czech republic", "czech"]),
    ("DK", "DNK", &["denmark", "danish"]),
    ("DJ", "DJI", &["djibouti", "djiboutian"]),
    ("EG", "EGY", &["egypt", "egyptian"]),
    ("ER", "ERI", &["eritrea", "eritrean"]),
    ("EE", "EST", &["estonia", "estonian"]),
    ("ET", "ETH", &["ethiopia", "ethiopian"]),
    ("FI", "FIN", &["finland", "finnish"]),
    ("FR", "FRA", &["france", "french"]),
    ("GE", "GEO", &["georgia", "georgian"]),
    ("DE", "DEU", &["germany", "german"]),
    ("GH", "GHA", &["ghana", "ghanaian"]),
    ("GR", "GRC", &["greece", "greek", "hellenic republic"]),
    ("GN", "GIN", &["guinea", "guinean"]),
    ("GW", "GNB", &["guinea bissau", "bissau guinean"]),
    ("HT", "HTI", &["haiti", "haitian"]),
    ("HU", "HUN", &["hungary", "hungarian"]),
    ("IN", "IND", &["india", "indian"]),
    ("ID", "IDN", &["indonesia", "indonesian"]),
    (
        "IR",
        "IRN",
        &[
            "iran",
            "iran islamic republic of",
            "islamic republic of iran",
            "iranian",
        ],
    ),
    ("IQ", "IRQ", &["iraq", "iraqi"]),
    ("IE", "IRL", &["ireland", "irish"]),
    ("IL", "ISR", &["israel", "israeli"]),
    ("IT", "ITA", &["italy", "italian"]),
    ("JP", "JPN", &["japan", "japanese"]),
    ("JO", "JOR", &["jordan", "jordanian"]),
    ("KZ", "KAZ", &["kazakhstan", "kazakh"]),
    ("KE", "KEN", &["kenya", "kenyan"]),
    (
        "KP",
        "PRK",
        &[
            "democratic people s republic of korea",
            "north korea",
            "dprk",
            "korea democratic people s republic of",
            "north korean",
        ],
    ),
    (
        "KR",
        "KOR",
        &[
            "republic of korea",
            "south korea",
            "korea republic of",
            "south korean",
        ],
    ),
    ("XK", "XKX", &["kosovo", "kosovar"]),
    ("KW", "KWT", &["kuwait", "kuwaiti"]),
    ("KG", "KGZ", &["kyrgyzstan", "kyrgyz"]),
    (
        "LA",
        "LAO",
        &["laos", "lao people s democratic republic", "lao"],
    ),
    ("LV", "LVA", &["latvia", "latvian"]),
    ("LB", "LBN", &["lebanon", "lebanese"]),
    ("LY", "LBY", &["libya", "libyan", "libyan arab jamahiriya"]),
    ("LT", "LTU", &["lithuania", "lithuanian"]),
    ("LU", "LUX", &["luxembourg", "luxembourgish"]),
    ("MY", "MYS", &["malaysia", "malaysian"]),
    ("MV", "MDV", &["maldives", "maldivian"]),
    ("ML", "MLI", &["mali", "malian"]),
    ("MT", "MLT", &["malta", "maltese"]),
    ("MR", "MRT", &["mauritania", "mauritanian"]),
    ("MX", "MEX", &["mexico", "mexican"]),
    ("MD", "MDA", &["moldova", "republic of moldova", "moldovan"]),
    ("ME", "MNE", &["montenegro", "montenegrin"]),
    ("MA", "MAR", &["morocco", "moroccan"]),
    ("MZ", "MOZ", &["mozambique", "mozambican"]),
    ("MM", "MMR", &["myanmar", "burma", "burmese"]),
    (
        "NL",
        "NLD",
        &["netherlands", "dutch", "kingdom of the netherlands"],
    ),
    ("NZ", "NZL", &["new zealand"]),
    ("NI", "NIC", &["nicaragua", "nicaraguan"]),
    ("NE", "NER", &["niger", "nigerien"]),
    ("NG", "NGA", &["nigeria", "nigerian"]),
    ("MK", "MKD", &["north macedonia", "macedonia", "macedonian"]),
    ("NO", "NOR", &["norway", "norwegian"]),
    ("OM", "OMN", &["oman", "omani"]),
    ("PK", "PAK", &["pakistan", "pakistani"]),
    (
        "PS",
        "PSE",
        &[
            "state of palestine",
            "palestine",
            "palestinian",
            "occupied palestinian territory",
        ],
    ),
    ("PA", "PAN", &["panama", "panamanian"]),
    ("PH", "PHL", &["philippines", "filipino", "philippine"]),
    ("PL", "POL", &["poland", "polish"]),
    ("PT", "PRT", &["portugal", "portuguese"]),
    ("QA", "QAT", &["qatar", "qatari"]),
    ("RO", "ROU", &["romania", "romanian"]),
    (
        "RU",
        "RUS",
        &[
            "russian federation",
            "russia",
            "russian",
            "ussr",
            "soviet union",
        ],
    ),
    ("RW", "RWA", &["rwanda", "rwandan"]),
    ("SA", "SAU", &["saudi arabia", "saudi", "saudi arabian"]),
    ("SN", "SEN", &["senegal", "senegalese"]),
    ("RS", "SRB", &["serbia", "serbian"]),
    ("SG", "SGP", &["singapore", "singaporean"]),
    ("SK", "SVK", &["slovakia", "slovak"]),
    ("SI", "SVN", &["slovenia", "slovenian"]),
    ("SO", "SOM", &["somalia", "somali"]),
    ("ZA", "ZAF", &["south africa", "south african"]),
    ("SS", "SSD", &["south sudan", "south sudanese"]),
    ("ES", "ESP", &["spain", "spanish"]),
    ("LK", "LKA", &["sri lanka", "sri lankan"]),
    ("SD", "SDN", &["sudan", "sudanese"]),
    ("SE", "SWE", &["sweden", "swedish"]),
    ("CH", "CHE", &["switzerland", "swiss"]),
    ("SY", "SYR", &["syrian arab republic", "syria", "syrian"]),
    ("TW", "TWN", &["taiwan", "taiwanese"]),
    ("TJ", "TJK", &["tajikistan", "tajik"]),
    (
        "TZ",
        "TZA",
        &["united republic of tanzania", "tanzania", "tanzanian"],
    ),
    ("TH", "THA", &["thailand", "thai"]),
    ("TT", "TTO", &["trinidad and tobago", "trinidadian"]),
    ("TN", "TUN", &["tunisia", "tunisian"]),
    ("TR", "TUR", &["turkey", "turkiye", "turkish"]),
    ("TM", "TKM", &["turkmenistan", "turkmen"]),
    ("UG", "UGA", &["uganda", "ugandan"]),
    ("UA", "UKR", &["ukraine", "ukrainian"]),
    ("AE", "ARE", &["united arab emirates", "uae", "emirati"]),
    (
        "GB",
        "GBR",
        &[
            "united kingdom of great britain and northern ireland",
            "united kingdom",
            "uk",
            "great britain",
            "british",
        ],
    ),
    (
        "US",
        "USA",
        &[
            "united states of america",
            "united states",
            "usa",
            "american",
        ],
    ),
    ("UZ", "UZB", &["uzbekistan", "uzbek"]),
    (
        "VE",
        "VEN",
        &[
            "venezuela",
            "venezuelan",
            "venezuela bolivarian republic of",
        ],
    ),
    ("VN", "VNM", &["viet nam", "vietnam", "vietnamese"]),
    ("YE", "YEM", &["yemen", "yemeni"]),
    ("ZW", "ZWE", &["zimbabwe", "zimbabwean"]),
];

fn words_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in any_ascii::any_ascii(text).chars() {
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

/// The key a country is compared by: its ISO alpha-2 code when known, else its normalised name;
/// `None` for blank or placeholder text ("na", "unknown").
pub fn country_key(text: &str) -> Option<String> {
    let trimmed = text.trim();
    // Lists write "na" / "n/a" for "not available"; Namibia is written "NA" or by name.
    if trimmed.is_empty() || matches!(trimmed, "na" | "n/a" | "N/A" | "-") {
        return None;
    }
    let upper = trimmed.to_ascii_uppercase();
    if upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Some(upper);
    }
    if upper.len() == 3
        && upper.bytes().all(|b| b.is_ascii_alphabetic())
        && let Some((alpha2, _, _)) = COUNTRIES.iter().find(|(_, a3, _)| *a3 == upper)
    {
        return Some((*alpha2).to_owned());
    }
    // "Indonesia (as at Dec. 2003)", "United States. Also believed…": the country comes first.
    let head = trimmed
        .split(['(', '.', ';', ','])
        .next()
        .unwrap_or(trimmed);
    for candidate in [words_of(trimmed), words_of(head)] {
        if let Some((alpha2, _, _)) = COUNTRIES
            .iter()
            .find(|(_, _, names)| names.contains(&candidate.as_str()))
        {
            return Some((*alpha2).to_owned());
        }
    }
    let head = words_of(head);
    // A demonym with a qualifier ("Possibly Ethiopian", "Sudanese by birth").
    for word in head.split(' ') {
        if let Some((alpha2, _, _)) = COUNTRIES
            .iter()
            .find(|(_, _, names)| names.contains(&word) && word.len() > 3)
        {
            return Some((*alpha2).to_owned());
        }
    }
    if head.is_empty() || matches!(head.as_str(), "na" | "n a" | "unknown" | "none") {
        return None;
    }
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::country_key;

    #[test]
    fn names_codes_and_demonyms_meet() {
        assert_eq!(
            country_key("Democratic People's Republic of Korea").as_deref(),
            Some("KP")
        );
        assert_eq!(country_key("PRK").as_deref(), Some("KP"));
        assert_eq!(country_key("kp").as_deref(), Some("KP"));
        assert_eq!(
            country_key("Iran (Islamic Republic of)").as_deref(),
            Some("IR")
        );
        assert_eq!(
            country_key("Indonesia (as at Dec. 2003)").as_deref(),
            Some("ID")
        );
        assert_eq!(country_key("Possibly Ethiopian").as_deref(), Some("ET"));
        assert_eq!(country_key("Atlantis").as_deref(), Some("atlantis"));
        assert_eq!(country_key(" na "), None);
    }
}
