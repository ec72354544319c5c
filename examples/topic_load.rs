//! The benchmark's topic load: SUBSCRIBERS Server-Sent Events streams on one topic, then
//!
//! 1. publish throughput: 16 publishers POST as fast as they can for SECONDS, while every
//!    subscriber receives every message;
//! 2. delivery latency: RATE messages a second for SECONDS, each carrying its publish time;
//!    each subscriber records the time from publish to receipt.
//!
//! Prints one JSON line: `publish_rps`, `delivered` / `expected` over both phases, and the
//! latency's `p50_ms`, `p99_ms`, `max_ms`. Usage: `topic_load BASE_URL SUBSCRIBERS SECONDS RATE`.
//! The load generator shares the machine with the service: compare systems in the same run.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::sync::Mutex;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: topic_load BASE_URL SUBSCRIBERS SECONDS RATE";
    let base = args.get(1).expect(usage).clone();
    let subscribers: usize = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let rate: u64 = args.get(4).and_then(|a| a.parse().ok()).expect(usage);
    let topic = format!("bench-{}", now_us());
    let client = reqwest::Client::new();
    let subscriber_client = client.clone();
    let events_url = format!("{base}/v1/topics/{topic}/events");
    let publish_url = format!("{base}/v1/topics/{topic}/messages");

    let delivered = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..subscribers {
        let response = subscriber_client
            .get(&events_url)
            .send()
            .await
            .expect("subscribes");
        assert_eq!(response.status(), 200);
        let delivered = delivered.clone();
        let latencies = latencies.clone();
        let measuring = measuring.clone();
        streams.push(tokio::spawn(async move {
            let mut events = response.bytes_stream().eventsource();
            let mut mine = Vec::new();
            while let Some(Ok(event)) = events.next().await {
                if event.event == "end" {
                    break;
                }
                delivered.fetch_add(1, Ordering::Relaxed);
                if measuring.load(Ordering::Relaxed)
                    && let Ok(sent) = event.data.parse::<u64>()
                {
                    mine.push(now_us().saturating_sub(sent));
                }
            }
            latencies.lock().await.extend(mine);
        }));
    }
    // Let every stream reach the server before anything is published.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let publish = move |data: serde_json::Value, event: Option<&'static str>| {
        let client = client.clone();
        let url = publish_url.clone();
        async move {
            let body = match event {
                Some(name) => serde_json::json!({"data": data, "event": name}),
                None => serde_json::json!({"data": data}),
            };
            let response = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .expect("publishes");
            assert_eq!(response.status(), 201);
        }
    };

    // 1. Throughput.
    let published = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut publishers = Vec::new();
    for _ in 0..16 {
        let published = published.clone();
        let publish = publish.clone();
        publishers.push(tokio::spawn(async move {
            while Instant::now() < until {
                publish(serde_json::json!(0), None).await;
                published.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let publish_rps = published.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. Latency at a fixed rate.
    measuring.store(true, Ordering::Relaxed);
    let total = rate * seconds;
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(every);
    let mut sent = Vec::new();
    for _ in 0..total {
        tick.tick().await;
        sent.push(tokio::spawn(publish(serde_json::json!(now_us()), None)));
    }
    for s in sent {
        s.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish(serde_json::json!("done"), Some("end")).await;
    for stream in streams {
        let _ = tokio::time::timeout(Duration::from_secs(10), stream).await;
    }

    let mut latencies = latencies.lock().await.clone();
    latencies.sort_unstable();
    let at = |q: f64| -> f64 {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    let expected = (published.load(Ordering::Relaxed) + total) * subscribers as u64;
    println!(
        "{}",
        serde_json::json!({
            "publish_rps": publish_rps,
            "published": published.load(Ordering::Relaxed) + total,
            "delivered": delivered.load(Ordering::Relaxed),
            "expected": expected,
            "p50_ms": at(0.5),
            "p99_ms": at(0.99),
            "max_ms": latencies.last().map_or(f64::NAN, |us| *us as f64 / 1000.0),
        })
    );
}
