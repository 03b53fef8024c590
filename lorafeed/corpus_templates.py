"""The fictional company's support-KB templates in English and Simplified Chinese (Qilin Home,
麒麟智家), used by the seeded corpus generator in `corpus`: slots, ``{a|b}`` alternatives, PII
sentences and the noisy HTML site template."""

PRODUCTS: dict[str, tuple[str, str]] = {
    "aurora": ("Aurora Smart Speaker", "极光智能音箱"),
    "nimbus": ("Nimbus Wi-Fi Router X2", "云雀路由器X2"),
    "pebble": ("Pebble GPS Tracker", "卵石定位器"),
    "atlas": ("Atlas Cloud Backup", "阿特拉斯云备份"),
    "lumen": ("Lumen Smart Bulb", "流明智能灯泡"),
    "vela": ("Vela Robot Vacuum", "维拉扫地机器人"),
}
API_ERRORS: dict[str, tuple[str, str]] = {
    "E1001": ("the request signature is invalid", "请求签名无效"),
    "E1002": ("the access token has expired", "访问令牌已过期"),
    "E2003": ("the rate limit was exceeded", "请求频率超过限制"),
    "E2107": ("a required parameter is missing or malformed", "缺少必填参数或参数格式错误"),
    "E3004": ("the order was not found", "订单不存在"),
    "E4005": ("the payment was declined by the bank", "银行拒绝了付款"),
    "E4209": ("the refund amount exceeds the amount paid", "退款金额超过实付金额"),
    "E5006": ("the service is temporarily unavailable", "服务暂时不可用"),
}
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "product": {"en": (
        ("The {product} {ships with|now runs} firmware {version}, which {adds|brings} {faster "
         "pairing|longer battery life|a quieter night mode}."),
        ("To set up the {product}, open the Qilin Home app, tap {Add device|the plus icon} and "
         "follow the on-screen steps."),
        "{Keep|Place} the {product} within {count} metres of your router during setup.",
        ("If the status light blinks {amber|red} for more than {count} seconds, hold the reset "
         "button until it turns {white|blue}."),
        "The {product} is covered by a {count}-month warranty from the date of delivery.",
        ("Firmware updates install {automatically|overnight} when the {product} is idle and "
         "connected to power."),
    ), "zh": (
        "{product}{出厂预装|已升级到}固件{version}，{新增|带来了}{更快的配对|更长的续航|更安静的夜间模式}。",
        "设置{product}时，请打开麒麟智家App，点击{“添加设备”|右上角的加号}，然后按照屏幕提示操作。",
        "配网期间请将{product}放在距离路由器{count}米以内的位置。",
        "如果指示灯{闪烁黄色|闪烁红色}超过{count}秒，请长按复位键直到指示灯变为{白色|蓝色}。",
        "{product}自签收之日起享受{count}个月{质保|保修}服务。",
        "{product}在空闲并接通电源时会{自动|在夜间}安装固件更新。",
    )},
    "orders": {"en": (
        "You can track order {order} under My Orders in your Qilin Home account.",
        "Orders placed before {hours}:00 are {usually|normally} processed the same business day.",
        ("To change the delivery address of order {order}, contact us before it leaves the "
         "warehouse."),
        "An order can be cancelled free of charge until it is marked as Shipped.",
        ("If order {order} shows Payment pending for more than {hours} hours, the bank has not "
         "yet confirmed the charge."),
        ("Bulk orders of more than {count} units of the {product} qualify for a {percent}% "
         "business discount."),
    ), "zh": (
        "您可以在麒麟智家账户的“我的订单”中查看订单{order}的物流状态。",
        "每天{hours}:00之前提交的订单{通常|一般}会在当天处理。",
        "如需修改订单{order}的收货地址，请在商品出库前联系客服。",
        "订单在显示“已发货”之前都可以免费取消。",
        "如果订单{order}显示“待付款”超过{hours}小时，说明银行尚未确认扣款。",
        "一次购买{product}超过{count}台的企业订单可享受{percent}%的优惠。",
    )},
    "refunds": {"en": (
        ("Refunds for the {product} are {usually|normally|typically} issued to the original "
         "payment method within {days} business days."),
        ("You may return the {product} within {days} days of delivery for a full refund, no "
         "questions asked."),
        ("Once the returned item passes inspection, we send a refund confirmation to the email "
         "address on your account."),
        "Refunds of {amount} or more may be split across several statements by some banks.",
        ("Items damaged by misuse are not eligible for a refund, but we can offer a repair at a "
         "reduced price."),
        "If a refund has not arrived after {days} days, contact support and quote order {order}.",
    ), "zh": (
        "{product}的退款{通常|一般}会在{days}个工作日内{原路退回|退回原支付账户}。",
        "签收{product}后{days}天内可申请无理由退货并获得全额退款。",
        "退回的商品检验合格后，我们会向您账户绑定的邮箱发送退款确认。",
        "金额在{amount}以上的退款，部分银行会分多笔入账。",
        "因使用不当造成损坏的商品不支持退款，但我们可以提供优惠价维修。",
        "如果{days}天后仍未收到退款，请联系客服并提供订单号{order}。",
    )},
    "shipping": {"en": (
        ("Standard shipping to {city} takes {count} to {days} business days; express shipping "
         "takes one to two."),
        "Orders over {amount} ship free of charge within mainland China.",
        "A tracking number is emailed as soon as the carrier collects your parcel.",
        ("If a parcel is marked delivered but you cannot find it, check with neighbours and the "
         "building reception first."),
        "We cannot ship the {product} to parcel lockers because delivery requires a signature.",
        ("International shipments may be subject to import duties, which are paid by the "
         "recipient."),
    ), "zh": (
        "寄往{city}的普通快递需要{count}到{days}个工作日，加急快递一到两天送达。",
        "订单金额满{amount}即可在中国大陆地区{免运费|包邮}。",
        "快递公司揽收后，我们会通过短信发送运单号。",
        "如果包裹显示已签收但您没有找到，请先询问邻居或物业前台。",
        "{product}需要本人签收，因此无法配送到快递柜。",
        "国际订单可能产生进口关税，由收件人承担。",
    )},
    "security": {"en": (
        "Turn on two-step verification to protect your Qilin Home account and your {product}.",
        "We will never ask for your password or verification code by phone, email or chat.",
        ("If you notice a login from an unfamiliar device, sign out of all sessions and change "
         "your password immediately."),
        ("Passwords must be at least {count} characters long and may not reuse your last five "
         "passwords."),
        ("After {count} failed sign-in attempts the account is locked for {hours} hours to stop "
         "password guessing."),
        ("You can review recent sign-ins, with device and approximate location, under Security "
         "settings."),
    ), "zh": (
        "开启两步验证可以保护您的麒麟智家账户和{product}的安全。",
        "我们不会通过电话、邮件或在线客服向您索要密码或验证码。",
        "如果发现陌生设备登录，请立即退出所有会话并修改密码。",
        "密码长度至少为{count}位，且不能与最近五次使用过的密码相同。",
        "连续{count}次登录失败后，账户将被锁定{hours}小时以防止密码被暴力破解。",
        "您可以在“安全设置”中查看最近的登录记录，包括设备和大致位置。",
    )},
    "invoices": {"en": (
        ("An electronic invoice for order {order} is available under My Orders within {days} days "
         "of delivery."),
        "To get a VAT special invoice, enter your company name and taxpayer ID before checkout.",
        ("Invoices cannot be reissued to a different company name once submitted to the tax "
         "system."),
        ("If the invoice amount of {amount} does not match your payment, the difference is "
         "usually a coupon or a shipping fee."),
        "Business customers on the {plan} plan receive one consolidated invoice per month.",
        ("Paper invoices are mailed separately and arrive {count} to {days} days after the "
         "electronic one."),
    ), "zh": (
        "订单{order}的电子发票会在签收后{days}天内显示在“我的订单”中。",
        "如需开具增值税专用发票，请在下单前填写公司名称和纳税人识别号。",
        "发票提交税务系统后，不能再更换抬头重新开具。",
        "如果发票金额{amount}与实付金额不一致，差额通常是优惠券或运费。",
        "{plan}企业客户每月会收到一张汇总发票。",
        "纸质发票单独邮寄，通常比电子发票晚{count}到{days}天送达。",
    )},
    "api": {"en": (
        "Error {code} means {meaning}.",
        ("When the API returns {code}, the response body contains a request ID that support can "
         "use to trace the call."),
        ("Retry requests that fail with {code} only after fixing the cause; blind retries count "
         "against your limit of {count} requests per minute."),
        ("The {plan} plan allows up to {count} API calls per minute; higher limits are available "
         "on request."),
        "All API requests must be signed with your secret key and sent over HTTPS.",
        ("SDK version {version} logs the full error payload, including {code}, when debug mode is "
         "on."),
    ), "zh": (
        "错误码{code}表示{meaning}。",
        "接口返回{code}时，响应体中包含请求ID，客服可据此追踪调用记录。",
        "遇到{code}时请先排查原因再重试，盲目重试会占用每分钟{count}次的调用额度。",
        "{plan}每分钟最多可调用接口{count}次，如需更高额度请联系我们。",
        "所有API请求都必须使用密钥签名，并通过HTTPS发送。",
        "SDK {version}在开启调试模式后会完整记录错误信息，包括{code}。",
    )},
}
GENERAL: dict[str, tuple[str, ...]] = {"en": (
    ("Qilin Home’s support team is available {every day|on weekdays} from 9:00 to {hours}:00 "
     "China Standard Time."),
    "Most questions are answered within {hours} hours — usually much sooner.",
    "Please have your order number ready when you contact us, for example {order}.",
    "This article applies to all regions unless stated otherwise.",
    "Screenshots in this article may differ slightly from app version {version}.",
    "You can also reach us through the in-app chat under Help & Feedback.",
    "Terms & Conditions apply to all promotions mentioned on this page…",
), "zh": (
    "麒麟智家客服{每天|工作日}9:00至{hours}:00在线为您服务。",
    "大部分问题会在{hours}小时内得到答复——通常会更快。",
    "联系客服时请准备好订单号，例如{order}。",
    "除特别说明外，本文适用于所有地区。",
    "本文截图可能与App {version}版本略有不同。",
    "您也可以在App的“帮助与反馈”中通过在线客服联系我们。",
    "本页提到的所有优惠活动均以活动规则为准……",
)}
TITLES: dict[str, dict[str, str]] = {
    "product": {"en": "{Getting started with|Setting up} the {product}",
                "zh": "{product}{使用入门|设置指南}"},
    "orders": {"en": "{Tracking and changing|Managing} your {product} order",
               "zh": "{product}订单{查询与修改|管理}"},
    "refunds": {"en": "{Refunds and returns|How refunds work} for the {product}",
                "zh": "{product}{退款与退货|退款说明}"},
    "shipping": {"en": "Shipping {options|times} for the {product}",
                 "zh": "{product}{配送方式|配送时效}"},
    "security": {"en": "Account security for {product} owners", "zh": "{product}用户的账户安全"},
    "invoices": {"en": "Invoices for {product} orders", "zh": "{product}订单发票"},
    "api": {"en": "API error {code} explained", "zh": "API错误码{code}说明"},
}
QUERIES: dict[str, dict[str, tuple[str, ...]]] = {
    "product": {"en": ("How do I set up the {product}?", "{product} firmware and reset"),
                "zh": ("{product}怎么设置？", "{product}固件升级和复位")},
    "orders": {"en": ("How can I track or change my {product} order?",),
               "zh": ("{product}的订单怎么查询和修改？",)},
    "refunds": {"en": ("How do I get a refund for the {product}?", "{product} return policy"),
                "zh": ("{product}怎么申请退款？", "{product}退货政策")},
    "shipping": {"en": ("How long does shipping take for the {product}?",),
                 "zh": ("{product}配送需要多久？",)},
    "security": {"en": ("How do I keep my account safe as a {product} owner?",),
                 "zh": ("{product}用户如何保护账户安全？",)},
    "invoices": {"en": ("How do I get an invoice for my {product} order?",),
                 "zh": ("{product}订单怎么开发票？",)},
    "api": {"en": ("What does API error {code} mean?",), "zh": ("接口报错{code}是什么意思？",)},
}
HEADINGS: dict[str, list[str]] = {
    "en": ["Overview", "Before you start", "How it works", "Step by step", "Troubleshooting",
           "Good to know", "Still need help?"],
    "zh": ["概述", "开始之前", "工作原理", "操作步骤", "常见问题", "注意事项", "仍需帮助？"],
}
PII_SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "email": {"en": ("The customer wrote from {v} about this.",
                     "Reply to {v} once the case is resolved."),
              "zh": ("客户邮箱：{v}，处理完成后请回复。",)},
    "phone": {"en": ("The customer can be reached at {v}.",),
              "zh": ("客户联系电话{v}，请在工作时间回电。",)},
    "id": {"en": ("Identity was verified with resident ID {v}.",),
           "zh": ("已核验客户身份证号{v}。",)},
    "card": {"en": ("The payment was made with card {v}.",), "zh": ("付款银行卡号为{v}。",)},
    "ip": {"en": ("The request came from IP address {v}.",), "zh": ("该请求来自IP地址{v}。",)},
}
SOURCES = ("help-center", "wiki", "faq", "ticket-macros")
PLANS = {"en": ("Basic", "Pro", "Enterprise"), "zh": ("基础版", "专业版", "企业版")}
CITIES = {"en": ("Shanghai", "Beijing", "Shenzhen", "Chengdu", "Hangzhou"),
          "zh": ("上海", "北京", "深圳", "成都", "杭州")}
EMAIL_NAMES = ("alice.wang", "bob.li", "chen.jie", "dana.zhou", "zhangwei", "lina", "wangfang")
EMAIL_DOMAINS = ("example.com", "example.cn", "mail.example.org", "corp.example.net")
MOBILE_PREFIXES = ("130", "133", "135", "138", "139", "150", "152", "158", "166", "177",
                   "180", "186", "189", "191", "199")
AREA_CODES = ("110101", "310104", "440305", "330106", "510107", "320102", "420106")
EN_FILLER = ("promptly", "securely", "directly", "quickly", "carefully", "manually", "online")
ZH_FILLER = "的一是在不了有和人这中大为上个我以要他时来用们生到作地于出就分对成会可主发年动同工"
ENTITIES = {"—": "&mdash;", "’": "&rsquo;", "“": "&ldquo;", "”": "&rdquo;", "…": "&hellip;"}
HTML_COMMENTS = ("<!-- cms:article v3 -->", "<!-- TODO: refresh screenshots -->",
                 "<!-- generated by kb-export -->")
HTML_NOISE = {
    "en": {"nav": '<a href="/">Home</a> | <a href="/products">Products</a> | '
                  '<a href="/support">Support</a>',
           "footer": "&copy; 2024 Qilin Home Devices Ltd. All rights reserved. | Privacy"},
    "zh": {"nav": '<a href="/">首页</a> | <a href="/products">产品</a> | '
                  '<a href="/support">服务支持</a>',
           "footer": "&copy; 2024 麒麟智家 版权所有 | 隐私政策 | 使用条款"},
}
HTML_PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: sans-serif; }} .nav a {{ margin: 0 4px; }}</style>
<script>var dl = window.dataLayer || [];
if (1 < 2) {{ dl.push({{build: {build}}}); }}</script>
</head><body><nav class="nav">{nav}</nav>
{comment}
<main><article>
{main}
</article></main>
<footer>{footer}</footer>
<script src="/static/analytics.js"></script><noscript>Enable JavaScript for chat.</noscript>
</body></html>
"""
