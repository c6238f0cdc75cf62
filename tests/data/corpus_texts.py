# ruff: noqa: RUF001 - full-width punctuation is the point of this corpus
"""Hand-written and generated texts for the token-estimator corpus (all written for this project).

``tests/data/make_corpus.py`` combines these with generated documents and the
project's own source and docs into ``tests/data/corpus.jsonl``.
"""

CHINESE = [
    "网关位于客户端和模型提供商之间，负责把每一个请求路由到最合适的模型。它需要同时考虑延迟、成本和质量三个目标，并在出现故障时自动切换到备用的提供商。",
    "当第一个令牌在一点二秒内没有到达时，网关会向另一个候选模型发送对冲请求。先返回第一个令牌的请求获胜，较慢的请求会被立即取消，连接也会被关闭。",
    "成本控制从请求进入网关的那一刻开始。我们先估算输入令牌的数量，再根据价格表计算预计费用；如果超过阈值，就发出警告、降级到更便宜的模型，或者把请求放入异步队列。",
    "质量保障依靠固定的金标准测试集。每一次策略或模型的变更都必须先通过测试集，然后按照百分之一、百分之十、百分之五十和百分之百的比例逐步放量。",
    "熔断器记录每个提供商和模型组合的连续失败次数。在三十秒内连续失败五次之后，熔断器打开；冷却时间结束后进入半开状态，只允许少量探测请求通过。",
    "运维人员可以通过仪表盘实时查看每个层级的延迟分位数、成功率、每千次请求的成本以及对冲比例。所有指标都遵循普罗米修斯的命名规范。",
    "今天的天气很好，我们决定去公园散步。路上看到很多人在跑步、骑车，还有孩子们在草地上放风筝。傍晚的时候，我们在湖边的小餐馆吃了晚饭。",
    "学习一门新的编程语言最好的方法，是用它写一个真正有用的小项目。遇到问题时先阅读官方文档，再查看源代码，最后才去搜索别人的答案。",
    "在分布式系统中，重试必须有预算，否则一次小小的故障就可能被放大成整个系统的雪崩。每一层都重试三次，五层之后就是两百四十三倍的流量。",
    "这份报告总结了上个季度的主要指标：平均响应时间下降了百分之十八，错误率从百分之二降到百分之零点五，月度账单减少了大约四分之一。",
    "请把下面的会议记录整理成三条要点，并用简洁的语言写出每一条的负责人和截止日期。如果有不确定的地方，请在最后单独列出。",
    "春节期间，火车站挤满了回家过年的人。有人拖着大箱子，有人抱着孩子，大家脸上都带着疲惫却期待的笑容。",
]

JAPANESE = [
    "ゲートウェイはクライアントとモデルのプロバイダーの間に立ち、すべてのリクエストを最適なモデルへ振り分けます。遅延、コスト、品質の三つの目標を同時に満たす必要があります。",
    "最初のトークンが一・二秒以内に届かない場合、ゲートウェイは別の候補にヘッジリクエストを送ります。先に最初のトークンを返したほうが勝ち、遅いほうはすぐに取り消されます。",
    "コストの管理はリクエストが届いた瞬間から始まります。入力トークン数を見積もり、価格表から予想費用を計算し、しきい値を超えたら警告、格下げ、または非同期キューへの投入を行います。",
    "品質を守るために、固定されたゴールドセットを使います。ポリシーやモデルを変更するたびに、まずゴールドセットに合格し、その後で一パーセント、十パーセント、五十パーセントと段階的に展開します。",
    "サーキットブレーカーはプロバイダーとモデルの組み合わせごとに連続した失敗を数えます。三十秒以内に五回失敗すると開き、クールダウンの後は半開状態になって少数の試験的なリクエストだけを通します。",
    "今日はとても良い天気だったので、近くの公園まで散歩に行きました。桜の木の下でお弁当を食べて、夕方まで本を読んで過ごしました。",
    "新しいプログラミング言語を学ぶ一番の近道は、実際に役に立つ小さなプロジェクトを作ってみることです。困ったときはまず公式のドキュメントを読みましょう。",
    "分散システムでは、再試行に予算を設けなければなりません。各層が三回ずつ再試行すると、五層目では二百四十三倍のトラフィックになってしまいます。",
    "先月の報告書によると、平均応答時間は十八パーセント短くなり、エラー率は二パーセントから〇・五パーセントに下がりました。",
    "次の議事録を三つの要点にまとめて、それぞれの担当者と締め切りを簡潔に書いてください。不明な点があれば最後にまとめて挙げてください。",
    "カタカナで書かれた言葉：コンピューター、ネットワーク、データベース、アプリケーション、インターフェース、セキュリティ、パフォーマンス。",
    "ひらがなだけの ぶん も ためして みましょう。きょう は あめ が ふって いる ので、いえ で ほん を よんで います。",
]

ENGLISH = [
    "The gateway sits between every client and every provider. When a provider slows down, the gateway notices first: time to first token is observed on every request, so a hedge can start long before a user would give up and retry by hand.",
    "Teams rarely get into trouble because connecting two providers is hard. They get into trouble because nobody watches the tail: a p95 that doubles on a Tuesday afternoon, a bill that triples because one feature started sending whole documents as context, a retry storm that turns a small outage into a large one.",
    "We measured everything twice. The first run warmed the caches and the connection pool; the second run is the one we report. On a shared machine, only ratios measured in the same run mean much, so every figure comes with its calibration.",
    "Dear team, thank you for the quick turnaround on last week's incident. The root cause was a misconfigured timeout on the fallback path, which meant that requests waited the full ten seconds before failing over. We've shortened it and added an alert.",
    "It was late in the evening when the train finally pulled into the station. The platform was almost empty, and the few passengers who stepped off hurried toward the exit, collars turned up against the cold wind that swept in from the river.",
    "Please summarise the following customer conversation in three sentences, highlight any promised follow-ups, and flag whether the customer seemed satisfied with the resolution. Keep the tone neutral and do not invent details that are not in the transcript.",
    "A circuit breaker has three states. Closed lets everything through and counts failures; open refuses everything until a cool-down ends; half-open lets a few probes through and closes again only after they succeed. The trick is choosing what counts as a failure.",
    "Honestly, I wasn't sure the new release would make it before the holidays. There were two regressions in the gold set, a flaky test that only failed on the CI machine, and a dependency upgrade that broke the build on Tuesday morning. We shipped on Thursday anyway.",
]
