use super::*;

/// (heading path joined with " > ", text) for compact assertions.
fn flat(page: &ExtractedPage) -> Vec<(String, String)> {
    page.blocks
        .iter()
        .map(|b| (b.heading_path.join(" > "), b.text.clone()))
        .collect()
}

fn all_text(page: &ExtractedPage) -> String {
    page.blocks
        .iter()
        .map(|b| b.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(h, t)| (h.to_string(), t.to_string()))
        .collect()
}

const ENGLISH: &str = r##"<!DOCTYPE html>
<html lang="en-GB">
<head>
  <meta charset="utf-8">
  <title>Opening hours | Harbour Bakery</title>
  <style>body { font-family: serif }</style>
  <script>window.dataLayer = [];</script>
</head>
<body class="page has-sidebar">
  <a class="skip-link" href="#content">Skip to content</a>
  <div id="cookie-banner">We use cookies. <button>Accept</button></div>
  <header class="site-header">
    <h1 class="logo">Harbour Bakery</h1>
    <nav><ul><li><a href="/">Home</a></li><li><a href="/about">About</a></li></ul></nav>
  </header>
  <div class="breadcrumbs"><a href="/">Home</a> › Opening hours</div>
  <div id="content" class="site-content">
    <h1>Opening hours</h1>
    <p>We bake   fresh bread
       every morning.</p>
    <h2>Weekdays</h2>
    <p>Monday to Friday: <strong>7am</strong> to 6pm.</p>
    <h3>Holidays</h3>
    <p>Closed on bank holidays.</p>
    <h2>Weekends</h2>
    <ul>
      <li>Saturday: 8am to 4pm</li>
      <li>Sunday: closed</li>
    </ul>
    <div class="share-buttons"><a href="#">Share on X</a></div>
    <script>trackPageView();</script>
    <noscript>Please enable JavaScript.</noscript>
  </div>
  <div class="sidebar"><h3>Latest news</h3><p>New sourdough!</p></div>
  <div id="comments"><h2>3 comments</h2><p>Great bread.</p></div>
  <footer id="footer"><p>© 2024 Harbour Bakery</p></footer>
</body>
</html>"##;

#[test]
fn english_page_keeps_only_article_text_with_heading_paths() {
    let page = extract_html(ENGLISH);
    assert_eq!(page.title, "Opening hours | Harbour Bakery");
    assert_eq!(page.lang.as_deref(), Some("en-GB"));
    assert_eq!(
        flat(&page),
        pairs(&[
            ("Opening hours", "We bake fresh bread every morning."),
            ("Opening hours > Weekdays", "Monday to Friday: 7am to 6pm."),
            (
                "Opening hours > Weekdays > Holidays",
                "Closed on bank holidays."
            ),
            ("Opening hours > Weekends", "Saturday: 8am to 4pm"),
            ("Opening hours > Weekends", "Sunday: closed"),
        ])
    );
    let text = all_text(&page);
    for noise in [
        "cookies",
        "Skip",
        "Home",
        "Share",
        "trackPageView",
        "JavaScript",
        "sourdough",
        "comments",
        "©",
    ] {
        assert!(!text.contains(noise), "{noise} leaked into {text:?}");
    }
}

const JAPANESE: &str = r##"<!DOCTYPE html>
<html lang="ja">
<head><meta charset="utf-8"><title>会社概要｜株式会社さくら製作所</title></head>
<body>
<div id="wrapper">
  <div id="header"><p class="logo">株式会社さくら製作所</p>
    <ul id="gnavi"><li><a href="/">ホーム</a></li><li><a href="/company/">会社概要</a></li></ul>
  </div>
  <div id="topicpath"><a href="/">ホーム</a> &gt; 会社概要</div>
  <div id="contents">
    <h1>会社概要</h1>
    <p>当社は1950年に創業し、
       精密部品の製造を行っています。
       <span>お客様</span><span>第一</span>を
       モットーとしています。</p>
    <table class="company">
      <tr><th>会社名</th><td>株式会社さくら製作所</td></tr>
      <tr><th>代表者</th><td>代表取締役　山田　太郎</td></tr>
      <tr><th>所在地</th><td>〒100-0001<br>東京都千代田区千代田1-1</td></tr>
    </table>
    <h2>営業時間</h2>
    <dl>
      <dt>平日</dt><dd>9:00〜18:00</dd>
      <dt>定休日</dt><dd>土曜・日曜・祝日</dd>
    </dl>
    <h2>アクセス</h2>
    <p>JR東京駅
       丸の内北口より徒歩5分。<br>
       駐車場はございません。</p>
  </div>
  <div id="side"><div class="side-menu"><a href="/news/">お知らせ</a><a href="/recruit/">採用情報</a></div></div>
  <div id="footer"><p class="copyright">Copyright © Sakura Seisakusho</p></div>
  <p id="pagetop"><a href="#wrapper">ページトップへ</a></p>
</div>
</body></html>"##;

#[test]
fn japanese_page_has_tight_cjk_text_and_headings() {
    let page = extract_html(JAPANESE);
    assert_eq!(page.title, "会社概要｜株式会社さくら製作所");
    assert_eq!(page.lang.as_deref(), Some("ja"));
    assert_eq!(
        flat(&page),
        pairs(&[
            (
                "会社概要",
                "当社は1950年に創業し、精密部品の製造を行っています。お客様第一をモットーとしています。"
            ),
            ("会社概要", "会社名: 株式会社さくら製作所"),
            ("会社概要", "代表者: 代表取締役 山田 太郎"),
            ("会社概要", "所在地: 〒100-0001 東京都千代田区千代田1-1"),
            ("会社概要 > 営業時間", "平日"),
            ("会社概要 > 営業時間", "9:00〜18:00"),
            ("会社概要 > 営業時間", "定休日"),
            ("会社概要 > 営業時間", "土曜・日曜・祝日"),
            (
                "会社概要 > アクセス",
                "JR東京駅丸の内北口より徒歩5分。\n駐車場はございません。"
            ),
        ])
    );
    let text = all_text(&page);
    for noise in ["ホーム", "お知らせ", "Copyright", "ページトップ"] {
        assert!(!text.contains(noise), "{noise} leaked into {text:?}");
    }
}

const KOREAN: &str = r##"<html lang="ko"><head><title>영업시간 안내 - 서울 치과</title></head>
<body>
<nav class="gnb"><a href="/">홈</a> <a href="/info">병원 소개</a></nav>
<main>
  <h2>영업시간</h2>
  <p>평일에는 오전 9시부터
     오후 6시까지 진료합니다.
     토요일은 <b>오후 1시</b>까지입니다.</p>
  <h2>오시는 길</h2>
  <p>지하철 2호선 강남역 3번 출구에서 도보 5분 거리입니다.</p>
</main>
<footer><p>서울 치과 | 사업자등록번호 123-45-67890</p></footer>
</body></html>"##;

#[test]
fn korean_page_keeps_word_spaces() {
    let page = extract_html(KOREAN);
    assert_eq!(page.title, "영업시간 안내 - 서울 치과");
    assert_eq!(page.lang.as_deref(), Some("ko"));
    assert_eq!(
        flat(&page),
        pairs(&[
            (
                "영업시간",
                "평일에는 오전 9시부터 오후 6시까지 진료합니다. 토요일은 오후 1시까지입니다."
            ),
            (
                "오시는 길",
                "지하철 2호선 강남역 3번 출구에서 도보 5분 거리입니다."
            ),
        ])
    );
}

#[test]
fn main_is_preferred_over_the_rest_of_the_body() {
    let html = r##"<body>
        <div class="promo"><h2>Big sale</h2><p>Everything must go.</p></div>
        <div role="main"><h1>Contact</h1><p>Call us on 01234 567890.</p>
          <header><p>Article header stays inside main.</p></header></div>
        <div><p>Unrelated body text.</p></div>
    </body>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("Contact", "Call us on 01234 567890."),
            ("Contact", "Article header stays inside main.")
        ])
    );
    // No <title>: the first h1 of the content.
    assert_eq!(page.title, "Contact");
    assert_eq!(page.lang, None);
}

#[test]
fn all_articles_are_taken_each_with_its_own_outline() {
    let html = r##"<body><div class="list">
        <article><header><h1>First post</h1><p class="meta">May 1</p></header><p>Alpha.</p>
          <footer><p>Tags: news</p></footer></article>
        <article><h2>Second post</h2><p>Beta.</p><article><p>Nested reply.</p></article></article>
        <p>Outside any article.</p>
    </div></body>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("First post", "May 1"),
            ("First post", "Alpha."),
            ("First post", "Tags: news"),
            ("Second post", "Beta."),
            ("Second post", "Nested reply."),
        ])
    );
}

#[test]
fn hidden_elements_are_dropped() {
    let html = r##"<main>
        <p>Visible.</p>
        <p hidden>Hidden attribute.</p>
        <div aria-hidden="true"><p>Aria hidden.</p></div>
        <p style="color: red; DISPLAY : none">Inline display none.</p>
        <p style="visibility:hidden">Invisible.</p>
        <div hidden="until-found"><p>Collapsed FAQ answer.</p></div>
        <template><p>Template.</p></template>
        <svg><text>Chart label</text></svg>
        <form><label>Email</label><input value="x"><button>Send</button></form>
        <iframe src="/ad"></iframe>
        <p>Also visible.</p>
    </main>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("", "Visible."),
            ("", "Collapsed FAQ answer."),
            ("", "Also visible.")
        ])
    );
}

#[test]
fn tables_lists_pre_and_quotes() {
    let html = r##"<article>
        <h2>Prices</h2>
        <table><caption>Bread</caption>
          <thead><tr><th>Item</th><th>Price</th><th>Size</th></tr></thead>
          <tbody><tr><td>Sourdough</td><td>£4</td><td><div>800g</div></td></tr>
                 <tr><td></td><td>£2</td><td>400g</td></tr></tbody>
        </table>
        <ol><li>First<ul><li>Nested one</li></ul></li><li>Second</li></ol>
        <pre>fn main() {
    println!("hi");
}</pre>
        <blockquote><p>Best bread in town.</p><p>— A customer</p></blockquote>
        <p>Line one<br>Line two<br><br>Line three</p>
        <p>Read <ruby>漢字<rp>(</rp><rt>かんじ</rt><rp>)</rp></ruby>.</p>
    </article>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("Prices", "Bread"),
            ("Prices", "Item | Price | Size"),
            ("Prices", "Sourdough | £4 | 800g"),
            ("Prices", "£2 | 400g"),
            ("Prices", "First"),
            ("Prices", "Nested one"),
            ("Prices", "Second"),
            ("Prices", "fn main() {\n    println!(\"hi\");\n}"),
            ("Prices", "Best bread in town."),
            ("Prices", "— A customer"),
            ("Prices", "Line one\nLine two\nLine three"),
            ("Prices", "Read 漢字."),
        ])
    );
}

#[test]
fn layout_tables_are_walked_cell_by_cell() {
    let html = r##"<body><table><tr>
        <td><ul class="menu"><li><a href="/">Home</a></li><li><a href="/a">About</a></li></ul></td>
        <td><h1>Welcome</h1><p>Our shop opened in 1990.</p><p>We sell tea.</p></td>
    </tr></table></body>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("Welcome", "Our shop opened in 1990."),
            ("Welcome", "We sell tea.")
        ])
    );
}

#[test]
fn a_restaurant_menu_is_content_but_a_link_menu_is_not() {
    let html = r##"<body>
        <div class="menu"><a href="/">Home</a> <a href="/menu">Menu</a></div>
        <section id="menu"><h2>Menu</h2><ul class="menu-list"><li>Ramen ¥900</li><li>Gyoza ¥400</li></ul></section>
    </body>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[("Menu", "Ramen ¥900"), ("Menu", "Gyoza ¥400")])
    );
}

#[test]
fn header_inside_content_is_kept_but_site_header_is_not() {
    let html = r##"<body>
        <div class="l-header"><p>Site tagline</p></div>
        <section><div class="section-header"><h2>Services</h2></div><p>We repair watches.</p></section>
        <div class="entry-header"><h3>Prices</h3></div><p>From ¥3,000.</p>
    </body>"##;
    let page = extract_html(html);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("Services", "We repair watches."),
            ("Services > Prices", "From ¥3,000.")
        ])
    );
}

#[test]
fn chrome_named_wrapper_does_not_swallow_main() {
    let html = r##"<body><div class="content-sidebar-wrap">
        <main><p>Real content.</p></main><div class="sidebar"><p>Widget.</p></div>
    </div></body>"##;
    assert_eq!(flat(&extract_html(html)), pairs(&[("", "Real content.")]));
    // Without any landmark, a page whose only wrapper looks like chrome still yields its text.
    let html =
        r##"<body><div class="navigation-wrapper"><p>Only text on the page.</p></div></body>"##;
    assert_eq!(
        flat(&extract_html(html)),
        pairs(&[("", "Only text on the page.")])
    );
}

#[test]
fn asp_net_page_form_keeps_content() {
    let html = r##"<body><form id="form1" method="post"><input type="hidden" name="__VIEWSTATE">
        <h1>製品情報</h1><p>高品質なバルブを製造しています。</p></form></body>"##;
    assert_eq!(
        flat(&extract_html(html)),
        pairs(&[("製品情報", "高品質なバルブを製造しています。")])
    );
}

#[test]
fn empty_headings_do_not_reset_the_path_and_new_h2_pops_deeper_levels() {
    let html = r##"<main><h1>A</h1><h2>B</h2><h3>C</h3><p>one</p><h3> </h3><p>two</p>
        <h2>D</h2><p>three</p><div role="heading" aria-level="4">E</div><p>four</p><h1>F</h1><p>five</p></main>"##;
    assert_eq!(
        flat(&extract_html(html)),
        pairs(&[
            ("A > B > C", "one"),
            ("A > B > C", "two"),
            ("A > D", "three"),
            ("A > D > E", "four"),
            ("F", "five"),
        ])
    );
}

#[test]
fn inline_elements_join_without_spurious_spaces() {
    let html = "<p><a href='#'>東京</a>\n<a href='#'>大阪</a>、<em>名古屋</em></p><p><b>Hello</b>\n<i>world</i>!</p>\
                <p>Tokyo<span>Osaka</span></p><custom-card>A</custom-card><custom-card>B</custom-card>";
    assert_eq!(
        flat(&extract_html(html)),
        pairs(&[
            ("", "東京大阪、名古屋"),
            ("", "Hello world!"),
            ("", "TokyoOsaka"),
            ("", "A"),
            ("", "B")
        ])
    );
}

#[test]
fn ten_thousand_nested_divs_do_not_overflow() {
    let depth = 10_000;
    let html = format!(
        "<html><body>{}<p>deep text</p>{}</body></html>",
        "<div>".repeat(depth),
        "</div>".repeat(depth)
    );
    let page = extract_html(&html);
    assert_eq!(flat(&page), pairs(&[("", "deep text")]));
    // Also nested tables, articles and unclosed inline elements.
    for open in [
        "<table><tr><td>",
        "<article>",
        "<span>",
        "<main>",
        "<ul><li>",
    ] {
        let html = format!("<body>{}x", open.repeat(3_000));
        let page = extract_html(&html);
        assert_eq!(all_text(&page), "x", "{open}");
    }
}

#[test]
fn malformed_and_empty_input_never_panics() {
    for html in [
        "",
        "   ",
        "<",
        "<html",
        "<p>unclosed <b>bold <i>both</p> after",
        "<table><p>misplaced</table>",
        "</div></div><p>stray closers",
        "<title>Only title</title>",
        "\u{FEFF}<p>bom</p>",
        "<p>\u{0}\u{1}nul</p>",
    ] {
        let page = extract_html(html);
        assert!(
            page.blocks
                .iter()
                .all(|b| !b.text.is_empty() && b.text == b.text.trim())
        );
    }
    assert_eq!(
        extract_html("<title>Only title</title>").title,
        "Only title"
    );
    assert_eq!(
        flat(&extract_html("<p>unclosed <b>bold <i>both</p> after")),
        pairs(&[("", "unclosed bold both"), ("", "after")])
    );
}

#[test]
fn output_is_deterministic() {
    // Each thread has its own hash seeds, so iteration order over any hash map inside extraction would
    // differ between them.
    for html in [ENGLISH, JAPANESE, KOREAN] {
        let runs: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || extract_html(html)))
            .map(|t| t.join().unwrap())
            .collect();
        assert!(!runs[0].blocks.is_empty());
        assert!(runs.iter().all(|r| *r == runs[0]));
    }
}

#[test]
fn title_falls_back_to_first_h1_and_lang_to_meta() {
    let html = r##"<html><head><meta http-equiv="Content-Language" content="ja, en"></head>
        <body><header><h1>Shop name</h1></header><main><p>x</p></main></body></html>"##;
    let page = extract_html(html);
    assert_eq!(page.title, "Shop name");
    assert_eq!(page.lang.as_deref(), Some("ja"));
}

#[test]
fn plain_text_splits_on_blank_lines() {
    let text = "\u{FEFF}  Harbour Bakery price list  \r\nUpdated weekly\r\n\r\n \r\nSourdough £4\nRye £3\n\n\n営業時間は\n平日9時からです。\n\n";
    let page = extract_text(text);
    assert_eq!(page.title, "Harbour Bakery price list");
    assert_eq!(page.lang, None);
    assert_eq!(
        flat(&page),
        pairs(&[
            ("", "Harbour Bakery price list Updated weekly"),
            ("", "Sourdough £4 Rye £3"),
            ("", "営業時間は平日9時からです。"),
        ])
    );
    let long = "あ".repeat(300);
    assert_eq!(extract_text(&long).title.chars().count(), 120);
    assert_eq!(extract_text(""), ExtractedPage::default());
}

#[test]
fn wordpress_post_keeps_entry_and_drops_thread_and_widgets() {
    let html = r##"<html lang="ja"><body class="post-template-default single has-sidebar">
      <div id="page" class="site">
        <header id="masthead" class="site-header"><p class="site-title">カフェ ひなた</p>
          <nav id="site-navigation" class="main-navigation"><ul id="primary-menu"><li><a href="/">ホーム</a></li></ul></nav></header>
        <div id="content" class="site-content"><div id="primary" class="content-area"><main id="main" class="site-main">
          <nav class="breadcrumb"><a href="/">ホーム</a> &gt; お知らせ</nav>
          <article class="post type-post">
            <header class="entry-header"><h1 class="entry-title">年末年始の営業について</h1></header>
            <div class="entry-content">
              <p>12月29日から1月3日まで休業いたします。</p>
              <p class="staff-comment">店長より：来年もよろしくお願いします。</p>
              <div class="sharedaddy sd-sharing-enabled"><h3 class="sd-title">共有:</h3><a href="#">X</a></div>
            </div>
          </article>
          <div id="comments" class="comments-area"><h2 class="comments-title">コメント 2件</h2>
            <ol class="comment-list"><li>おつかれさまです</li></ol>
            <div id="respond" class="comment-respond"><h3>コメントを残す</h3></div></div>
        </main></div>
        <aside id="secondary" class="widget-area"><section class="widget"><h2>最近の投稿</h2></section></aside></div>
        <footer id="colophon" class="site-footer"><div class="site-info">Proudly powered by WordPress</div></footer>
      </div></body></html>"##;
    assert_eq!(
        flat(&extract_html(html)),
        pairs(&[
            (
                "年末年始の営業について",
                "12月29日から1月3日まで休業いたします。"
            ),
            (
                "年末年始の営業について",
                "店長より：来年もよろしくお願いします。"
            ),
        ])
    );
}
