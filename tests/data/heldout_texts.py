# ruff: noqa: RUF001 - full-width punctuation and non-Latin scripts are the point of these texts
"""Hand-written texts for the held-out estimator corpus only (written for this project).

``tests/data/make_heldout.py`` mixes these with text drawn from installed
packages. Nothing here appears in the training texts (``corpus_texts.py``,
``train_texts.py``): the held-out figures are only honest if the fit never
saw these words.
"""

ENGLISH = [
    "My grandmother kept a notebook of every storm that passed over the farm. Each entry had the date, the direction the wind came from, and a single line about what it broke: the henhouse roof, the old pear tree, once the kitchen window. When she died we found forty years of weather in a shoebox under her bed.",
    "The ferry left at six, whatever the weather. In winter that meant crossing in the dark, with the deck lights swinging and the gulls asleep on the water. Most regulars stayed inside with their coffee, but Thomas always stood at the rail, as if somebody on the far shore might be waiting for him.",
    "Thank you for your application to the summer programme. We received more than four hundred letters this year, and the committee read every one of them. Unfortunately we cannot offer you a place this time, but we would be glad to hear from you again next spring.",
    "Bread is mostly patience. Mix the flour and the water, leave it alone for half an hour, then add the salt and the starter. Fold it every thirty minutes for the first two hours. After that, the dough does the work, and your only job is to resist opening the oven too early.",
    "The committee met on Thursday to review the proposal for the new library wing. Several members raised concerns about the budget, in particular the cost of the glass roof, which the architects had estimated at nearly a third of the total. A revised plan will be presented next month.",
    "If you have ever tried to teach a child to ride a bicycle, you know that explanations are useless. You run beside them, holding the seat, and at some moment you cannot name you let go. They do not notice at first. Then they notice, and fall, and get up, and ride away.",
    "Rain had followed us for three days along the coast road, and by the time we reached the village the river had climbed over its banks. The innkeeper gave us dry towels, a pot of tea and the last two rooms, and told us the bridge would probably be closed until Sunday.",
    "Researchers tracked more than two thousand volunteers over a decade and found that people who walked for at least twenty minutes a day reported better sleep and fewer colds. The authors caution that the study shows a correlation, not a cause, and call for a controlled trial.",
    "I'm writing to ask whether the meeting on the fourteenth could be moved to the afternoon. Two of our engineers are flying back from the conference that morning, and they would very much like to present the results themselves rather than send slides.",
    "Nobody in the orchestra remembered who had first suggested playing the symphony without a conductor. It sounded absurd in rehearsal, and the first movement fell apart twice. But by the night of the concert they were listening to each other so closely that the hall went completely silent.",
]

RUSSIAN = [
    "Вчера вечером мы наконец добрались до старой дачи. Дорогу размыло после дождей, и последние два километра пришлось идти пешком, неся рюкзаки и корзину с продуктами. Зато в доме было тепло, а на плите уже стоял чайник, который оставили соседи.",
    "Уважаемые коллеги! Напоминаем, что отчёт за третий квартал необходимо сдать до пятницы. Если у вас возникли вопросы по новой форме, обратитесь в бухгалтерию или напишите нам по электронной почте, и мы постараемся ответить в тот же день.",
    "Город просыпался медленно. Сначала открылась булочная на углу, потом зажглись окна в доме напротив, и по мокрому асфальту проехал первый трамвай. Я стоял у окна с чашкой кофе и думал о том, что сегодня наконец скажу ей правду.",
    "Исследователи из университета обнаружили, что растения способны реагировать на звуки, которые издают насекомые. В ходе эксперимента листья, подвергшиеся воздействию записи, начинали вырабатывать защитные вещества быстрее, чем листья контрольной группы.",
    "Чтобы приготовить настоящий борщ, нужно запастись терпением. Сначала варится бульон, затем отдельно тушатся свёкла, морковь и лук. Капусту и картофель добавляют в самом конце, а перед подачей борщ должен постоять хотя бы полчаса.",
    "Мой дед всю жизнь проработал на железной дороге и знал расписание поездов наизусть. Даже на пенсии он каждое утро выходил к переезду, смотрел на часы и довольно кивал, если скорый проходил вовремя.",
    "Шановні батьки! Повідомляємо, що наступного тижня в школі відбудеться день відкритих дверей. Ви зможете поспілкуватися з учителями, відвідати уроки та побачити нові лабораторії, які ми облаштували за літо.",
    "Команда разработчиков выпустила новую версию приложения. В ней исправлены ошибки синхронизации, ускорена загрузка больших файлов и добавлена тёмная тема, о которой давно просили пользователи.",
]

ARABIC = [
    "في صباح يوم الجمعة خرجنا إلى السوق القديم لشراء الخبز والفاكهة. كانت الأزقة مزدحمة بالناس، ورائحة القهوة والهيل تملأ المكان، والباعة ينادون على بضاعتهم بأصوات عالية.",
    "نود أن نشكركم على اهتمامكم بالبرنامج التدريبي. سيبدأ التسجيل في الأول من الشهر القادم، ويمكنكم تقديم الطلب عبر الموقع الإلكتروني أو بزيارة مكتب شؤون الطلاب خلال ساعات العمل الرسمية.",
    "تعلمت من جدتي أن الصبر هو أهم مكون في المطبخ. كانت تترك العجين يرتاح ساعات طويلة، وتقول إن الخبز الذي يُخبز على عجل لا يُشبع أحداً.",
    "أظهرت دراسة حديثة أن المشي لمدة نصف ساعة يومياً يقلل من خطر الإصابة بأمراض القلب. ويؤكد الباحثون أن الانتظام أهم من السرعة، وأن الفائدة تظهر بعد أسابيع قليلة فقط.",
    "وصل القطار متأخراً ساعتين بسبب العاصفة الرملية. انتظر المسافرون على الرصيف بصبر، وبعضهم جلس على الحقائب يقرأ الصحف، بينما كان الأطفال يركضون ويلعبون دون أن يلاحظوا شيئاً.",
    "يسعدنا أن نعلن عن افتتاح فرعنا الجديد في وسط المدينة. سيقدم الفرع جميع الخدمات المصرفية، بالإضافة إلى قسم خاص لخدمة الشركات الصغيرة والمتوسطة.",
    "این کتاب داستان زندگی مردی است که پس از سال‌ها دوری به روستای خود بازمی‌گردد و می‌بیند که همه چیز تغییر کرده است، جز درخت گردویی که پدرش کاشته بود.",
    "يرجى العلم بأن الاجتماع الأسبوعي قد تم تأجيله إلى يوم الأربعاء في تمام الساعة العاشرة صباحاً، وذلك لتمكين جميع أعضاء الفريق من الحضور.",
]

HINDI = [
    "कल शाम हम पुराने बाज़ार गए। वहाँ बहुत भीड़ थी, हर दुकान पर रंग-बिरंगे कपड़े और मिठाइयाँ सजी हुई थीं। हमने माँ के लिए एक सुंदर शॉल खरीदी और फिर चाय की दुकान पर बैठकर गरम समोसे खाए।",
    "प्रिय ग्राहक, हमें यह बताते हुए खुशी हो रही है कि आपका ऑर्डर भेज दिया गया है। यह तीन से पाँच कार्य दिवसों के भीतर आपके पते पर पहुँच जाएगा। किसी भी प्रश्न के लिए कृपया हमारी सहायता टीम से संपर्क करें।",
    "मेरे दादाजी हर सुबह सूरज निकलने से पहले उठ जाते थे। वे बगीचे में पौधों को पानी देते, फिर अखबार पढ़ते और हम बच्चों को पुराने ज़माने की कहानियाँ सुनाते थे।",
    "वैज्ञानिकों ने एक नए अध्ययन में पाया है कि नियमित रूप से योग करने से तनाव कम होता है और नींद की गुणवत्ता में सुधार होता है। शोध में पाँच सौ से अधिक लोगों ने भाग लिया।",
    "बारिश के मौसम में गाँव की सड़कें कीचड़ से भर जाती हैं। फिर भी बच्चे स्कूल जाने के लिए उत्साहित रहते हैं, क्योंकि रास्ते में उन्हें कागज़ की नावें चलाने का मौका मिलता है।",
    "कंपनी ने अपने नए मोबाइल ऐप का संस्करण जारी किया है, जिसमें भुगतान की प्रक्रिया को आसान बनाया गया है और कई भाषाओं का समर्थन जोड़ा गया है।",
    "कृपया ध्यान दें कि अगले सप्ताह सोमवार को कार्यालय बंद रहेगा। सभी कर्मचारियों से अनुरोध है कि वे अपने लंबित कार्य शुक्रवार तक पूरे कर लें।",
    "दिल्ली की सर्दियाँ अपने आप में खास होती हैं। कोहरे से ढकी सुबह, मूंगफली बेचने वाले ठेले और शाम को अलाव के पास बैठे लोग, सब मिलकर शहर को एक अलग ही रंग दे देते हैं।",
]

CHINESE = [
    "周末我们带着孩子去郊外爬山。山路不算陡，但是走了两个多小时，大家都有点累了。到了山顶，风很大，远处的村庄和田野看得清清楚楚，孩子们高兴得又叫又跳。",
    "尊敬的用户：感谢您一直以来的支持。由于系统升级，本周六凌晨两点至六点期间，部分服务将暂停使用。给您带来的不便，我们深表歉意。",
    "奶奶做的饺子是全家人最爱吃的。她总是前一天晚上就把馅儿调好，第二天一早开始擀皮儿。我们围在桌边一起包，谁包得最难看，谁就负责洗碗。",
    "研究人员发现，每天保持七到八个小时的睡眠，可以明显提高记忆力和注意力。专家建议，睡前一小时最好不要使用手机，以免影响入睡。",
    "这家小书店开在老街的拐角，已经有三十多年的历史了。店主是一位退休的语文老师，他记得每一位常客喜欢读什么书，还会在新书到货时打电话通知他们。",
    "會議將於下週三上午十點在三樓會議室舉行，請各部門負責人準時出席，並提前準備好本季度的工作總結和下一階段的計劃。",
    "火车缓缓驶出站台，窗外的城市渐渐被抛在身后。我靠在座位上，看着一排排树木飞快地向后退去，心里想着三年没见的父母，不知道他们现在身体好不好。",
    "公司决定从下个月开始实行弹性工作制。员工可以在早上七点到十点之间自由选择上班时间，只要保证每天工作满八个小时即可。",
]

JAPANESE = [
    "週末は家族で海に行きました。朝早く出発したので、道はまだ空いていて、九時前には海岸に着きました。子どもたちは砂浜で城を作り、私は日陰で本を読んでのんびり過ごしました。",
    "いつもご利用いただき、誠にありがとうございます。システムメンテナンスのため、今週土曜日の午前二時から六時まで、一部のサービスを停止いたします。ご迷惑をおかけしますが、よろしくお願いいたします。",
    "祖母の作る味噌汁は、毎朝の楽しみでした。出汁は必ず昆布と鰹節から取り、具は季節によって変わりました。春は菜の花、夏は茄子、冬は大根と油揚げが定番でした。",
    "最近の研究によると、一日に二十分ほど散歩するだけで、気分が明るくなり、睡眠の質も良くなることが分かってきました。特に朝の光を浴びることが大切だそうです。",
    "駅前の小さな喫茶店は、四十年以上同じ場所で営業を続けています。マスターは無口な人ですが、常連客の好みをすべて覚えていて、注文しなくてもいつものコーヒーが出てきます。",
    "来月から新しいプロジェクトが始まります。チームのメンバーは東京と大阪に分かれているため、週に一度オンラインで進捗を共有する予定です。",
    "雨の日の図書館はとても静かで、ページをめくる音だけが聞こえてきます。窓の外では桜の花びらが濡れた歩道に落ちていて、春がもうすぐ終わることを教えてくれました。",
    "カスタマーサポートへのお問い合わせは、平日の午前九時から午後六時まで受け付けております。メールでのお問い合わせには、二営業日以内に返信いたします。",
]

# Openings of user turns in the generated chat transcripts.
CHAT_ASKS = [
    "Can you explain what this function does and whether it has any bugs?",
    "Please rewrite the following paragraph so it sounds less formal:",
    "I keep getting an error when I run this. Any idea why?",
    "Summarize the key points below in three bullet points.",
    "Translate this into English, keeping the tone:",
    "What's the difference between these two approaches? Which would you pick for a small team?",
    "Here is the config we use in production. Is anything obviously wrong?",
    "Write a short reply to this customer message. Be polite but firm.",
    "Could you turn this data into a markdown table?",
    "hey, quick one: why does this return None sometimes??",
]

# Openings of assistant turns.
CHAT_REPLIES = [
    "Sure! Here's a breakdown of what's going on:",
    "Good question. The short answer is that it depends on the size of the input.",
    "There are a couple of issues here. Let me go through them one by one.",
    "Here's a cleaned-up version:",
    "The error comes from the second call, which runs before the first one has finished.",
    "Happy to help. Below is a table with the values you asked for.",
    "I'd go with the second option, mainly because it's easier to test.",
    "Absolutely — here are the main points:",
]
