//! Tests of deploy logs: bounds that keep a run's head and tail, rendering, the writer.

use super::*;

fn line(seq: i64, text: &str) -> LogLine {
    LogLine {
        seq,
        at: 1_764_170_594_123,
        stream: Stream::Stdout,
        text: text.to_owned(),
    }
}

#[test]
fn within_its_limit_a_run_keeps_everything() {
    let mut bounds = Bounds::new(1000);
    assert!((0..9).all(|seq| bounds.add(seq, 100).is_none()));
}

#[test]
fn past_its_limit_a_run_keeps_its_head_and_its_most_recent_tail() {
    let mut bounds = Bounds::new(1000);
    let dropped: Vec<(i64, i64)> = (0..20).filter_map(|seq| bounds.add(seq, 100)).collect();
    // Lines 0-4 fill the head; the tail holds 5 lines, so 5..=14 go as 15..=19 come.
    assert_eq!(dropped.first(), Some(&(5, 5)));
    assert_eq!(dropped.last(), Some(&(14, 14)));
    assert_eq!(dropped.len(), 10);
    let kept: Vec<i64> = bounds.tail.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(kept, [15, 16, 17, 18, 19]);
}

#[test]
fn a_single_line_longer_than_the_tail_still_stays() {
    let mut bounds = Bounds::new(100);
    assert_eq!(bounds.add(0, 40), None);
    assert_eq!(bounds.add(1, 500), None);
    assert_eq!(bounds.add(2, 10), Some((1, 1)));
}

#[test]
fn rendering_shows_time_stream_and_where_lines_were_omitted() {
    let text = render(
        &[line(0, "first"), line(1, "second"), line(7, "last")],
        None,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "2025-11-26T15:23:14.123Z stdout     | first");
    assert!(lines[2].contains("5 lines omitted"), "{text}");
    assert!(lines[3].ends_with("| last"), "{text}");
    // A chunk continuing from line 1 shows no gap before line 2.
    assert!(!render(&[line(2, "x")], Some(1)).contains("omitted"));
}

#[tokio::test]
async fn an_overlong_line_is_cut_at_a_character_boundary_and_marked() {
    let (sender, mut receiver) = mpsc::channel(1);
    let long = "é".repeat(MAX_LINE);
    LogSender(sender).line(Stream::Stderr, &long).await;
    let (_, _, text) = receiver.try_recv().unwrap();
    assert!(text.len() < MAX_LINE + 64, "{}", text.len());
    assert!(text.ends_with("[…line cut at 8192 bytes]"), "{text}");
}

#[tokio::test]
async fn a_deployment_run_again_continues_its_log_after_the_earlier_run() {
    let store = Store::open(crate::store::IN_MEMORY, crate::model::Sync::Normal).unwrap();
    let id = DeploymentId::from(880_001);
    let earlier = [line(0, "first run, line 0"), line(1, "first run, line 1")];
    store
        .write(move |c| logs::append(c, id, &earlier, None))
        .await
        .unwrap();
    let (writer, sender) = LogWriter::start(store.clone(), LogHub::default(), id, 1 << 20).await;
    sender.line(Stream::Stdout, "second run").await;
    drop(sender);
    writer.finish().await;
    let (lines, _) = store
        .read(move |c| logs::read_after(c, id, None, 100))
        .await
        .unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[..2], ["first run, line 0", "first run, line 1"]);
    assert!(texts[2].contains("runs again"), "{texts:?}");
    assert_eq!(texts[3], "second run");
    let seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
}
