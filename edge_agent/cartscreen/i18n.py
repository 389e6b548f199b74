"""Every string the cart screen shows, in English and Chinese (simplified).

The page loads this table once (``/api/i18n``) and switches language without a reload.
Keys are stable identifiers; a missing translation falls back to English.
"""

from __future__ import annotations

# ruff: noqa: RUF001 - Chinese punctuation is full-width by design

LANGUAGES = ("en", "zh")

STRINGS: dict[str, dict[str, str]] = {
    "welcome": {"en": "Welcome", "zh": "欢迎光临"},
    "hello_member": {"en": "Hello, {name}", "zh": "{name}，您好"},
    "guest": {"en": "Guest", "zh": "访客"},
    "scan_member": {"en": "Scan your member QR", "zh": "扫描会员码"},
    "member_code": {"en": "Member code", "zh": "会员码"},
    "sign_in": {"en": "Sign in", "zh": "登录"},
    "points": {"en": "Points", "zh": "积分"},
    "tier": {"en": "Tier", "zh": "等级"},
    "basket": {"en": "Basket", "zh": "购物车"},
    "empty_basket": {"en": "Your basket is empty", "zh": "购物车是空的"},
    "subtotal": {"en": "Subtotal", "zh": "小计"},
    "savings": {"en": "You save", "zh": "已优惠"},
    "total": {"en": "Total", "zh": "合计"},
    "coupons": {"en": "My coupons", "zh": "我的优惠券"},
    "no_coupons": {"en": "No coupons yet", "zh": "暂无优惠券"},
    "new_coupon": {"en": "New coupon for you!", "zh": "您有新的优惠券！"},
    "apply": {"en": "Apply", "zh": "使用"},
    "applied": {"en": "Applied", "zh": "已使用"},
    "remove": {"en": "Remove", "zh": "取消使用"},
    "later": {"en": "Later", "zh": "稍后"},
    "valid_until": {"en": "Valid until", "zh": "有效期至"},
    "map": {"en": "Store map", "zh": "店内地图"},
    "you_are_here": {"en": "You are here", "zh": "您的位置"},
    "shopping_list": {"en": "Shopping list", "zh": "购物清单"},
    "add_to_list": {"en": "Add to list", "zh": "加入清单"},
    "route": {"en": "Route", "zh": "路线"},
    "search": {"en": "Search products", "zh": "搜索商品"},
    "search_hint": {"en": "Name or barcode", "zh": "名称或条码"},
    "price_check": {"en": "Price check", "zh": "查价"},
    "not_found": {"en": "Not found", "zh": "未找到"},
    "recommended": {"en": "You may also like", "zh": "猜你喜欢"},
    "checkout": {"en": "Checkout", "zh": "结账"},
    "pay_qr": {"en": "Scan to pay", "zh": "扫码支付"},
    "paid": {"en": "I have paid", "zh": "我已支付"},
    "receipt": {"en": "E-receipt", "zh": "电子小票"},
    "thank_you": {"en": "Thank you for shopping with us", "zh": "感谢您的光临"},
    "points_earned": {"en": "Points earned", "zh": "获得积分"},
    "language": {"en": "中文", "zh": "English"},
    "offline": {"en": "Reconnecting…", "zh": "正在重新连接…"},
    "zone": {"en": "Zone", "zh": "区域"},
    "shelf": {"en": "Shelf", "zh": "货架"},
    "qty": {"en": "Qty", "zh": "数量"},
    "close": {"en": "Close", "zh": "关闭"},
    "ok": {"en": "OK", "zh": "好的"},
    "scan_reminder_title": {"en": "Did you forget to scan something?", "zh": "是否忘记扫码？"},
    "scan_reminder_body": {
        "en": "We saw {item} go into your cart. Please scan it so it is on your bill.",
        "zh": "我们看到{item}放入了购物车，请扫码后再放入。",
    },
    # the vision model's categories (protocols.vision.PRODUCT_CATEGORIES), for the prompt
    "cat_beverage_can": {"en": "a can of drink", "zh": "罐装饮料"},
    "cat_bottle": {"en": "a bottle", "zh": "瓶装饮品"},
    "cat_cereal_box": {"en": "a box of cereal", "zh": "盒装麦片"},
    "cat_milk_carton": {"en": "a carton of milk", "zh": "盒装牛奶"},
    "cat_fruit": {"en": "some fruit", "zh": "水果"},
    "cat_snack_bag": {"en": "a bag of snacks", "zh": "袋装零食"},
    "cat_detergent": {"en": "some detergent", "zh": "洗涤剂"},
    "cat_bread": {"en": "some bread", "zh": "面包"},
    "cat_egg_carton": {"en": "a box of eggs", "zh": "盒装鸡蛋"},
    "cat_yogurt_cup": {"en": "a yogurt", "zh": "酸奶"},
    "cat_other": {"en": "an item", "zh": "商品"},
}


def table() -> dict[str, dict[str, str]]:
    """``{lang: {key: text}}`` with English filled in for any missing translation."""
    return {lang: {k: v.get(lang) or v["en"] for k, v in STRINGS.items()} for lang in LANGUAGES}
