"""The pages' words: English is the key, Vietnamese its translation (``t("Boxes")`` is "Cụm loa").

tests/test_central_pages.py checks that every phrase the templates write has its Vietnamese here.
"""

from __future__ import annotations

from collections.abc import Callable

LEVEL_NAMES = {"normal": "Normal", "priority": "Priority", "emergency": "Emergency"}

RRULE_PRESETS = (
    ("FREQ=DAILY", "Every day"),
    ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "Monday to Friday"),
    ("FREQ=WEEKLY", "Every week, on the first time's weekday"),
    ("custom", "Custom rule (below)"),
)

# Long texts have short keys; their English is in EN.
EN = {
    "levels.hint": "A normal bulletin for boxes below your own unit is offered to their commune, whose "
    "operator accepts it or not. A priority bulletin is scheduled as you set it. An emergency without a "
    "time plays at once.",
    "login.throttled": "Too many wrong passwords: try again in {seconds} s.",
    "collisions.hint": "A priority bulletin of a higher unit plays while one of the commune's own is due. "
    "Choose which plays first: it keeps its time, and the other starts as it ends.",
    "emergency.hint": "An emergency interrupts whatever the boxes play and plays at once. You will be "
    "asked to confirm.",
    "stop.hint": "Sent by mistake? Stopping cuts it off where it plays, and a box still downloading its "
    "audio, or holding it to play after what it plays now, never plays it.",
}
LEVELS_HINT_VI = (
    "Bản tin thông thường gửi tới cụm loa của đơn vị cấp dưới sẽ được đề xuất cho xã; người vận hành của "
    "xã quyết định nhận hay không. Bản tin ưu tiên được lên lịch đúng như bạn đặt. Bản tin khẩn cấp không "
    "đặt giờ sẽ phát ngay."
)
EMERGENCY_HINT_VI = (
    "Phát khẩn cấp sẽ ngắt mọi nội dung đang phát và phát ngay lập tức. Bạn sẽ được hỏi xác nhận."
)

VI = {
    # navigation and sign-in
    "Loa central": "Loa – Trung tâm",
    "Boxes": "Cụm loa",
    "Schedule": "Lịch phát",
    "New bulletin": "Tạo bản tin",
    "Reports": "Báo cáo",
    "Library": "Thư viện",
    "Audio library": "Thư viện âm thanh",
    "Name": "Tên",
    "Length": "Thời lượng",
    "Added": "Ngày thêm",
    "Source": "Nguồn",
    "Schedule it": "Lên lịch phát",
    "uploaded by": "tải lên bởi",
    "The library is empty.": "Thư viện chưa có âm thanh.",
    "Emergency": "Khẩn cấp",
    "Sign in": "Đăng nhập",
    "Sign out": "Đăng xuất",
    "User name": "Tên đăng nhập",
    "Password": "Mật khẩu",
    "Wrong user name or password.": "Sai tên đăng nhập hoặc mật khẩu.",
    "login.throttled": "Nhập sai mật khẩu quá nhiều lần: hãy thử lại sau {seconds} giây.",
    "Not possible": "Không thực hiện được",
    "Back to the boxes": "Về danh sách cụm loa",
    # boxes
    "online": "trực tuyến",
    "offline": "mất kết nối",
    "playing": "đang phát",
    "removed": "đã ngừng sử dụng",
    "Box": "Cụm loa",
    "Unit": "Đơn vị",
    "Status": "Trạng thái",
    "Last seen": "Liên lạc lần cuối",
    "No box is registered in your units yet.": "Chưa có cụm loa nào được đăng ký trong đơn vị của bạn.",
    "Emergency to this box": "Phát khẩn cấp tới cụm loa này",
    "Now playing": "Đang phát",
    "Item": "Mục",
    "Level": "Mức độ",
    "Zones": "Vùng loa",
    "all": "tất cả",
    "Nothing plays.": "Không phát gì.",
    "Relays": "Rơ-le",
    "Closed": "Đang đóng",
    "All open": "Tất cả đang mở",
    "Volume": "Âm lượng",
    "Clock": "Đồng hồ",
    "trusted": "tin cậy",
    "not trusted": "chưa tin cậy",
    "Telemetry": "Thông số vận hành",
    "No telemetry yet.": "Chưa có thông số.",
    "Alarms and events": "Cảnh báo và sự kiện",
    "Time": "Thời gian",
    "Severity": "Mức",
    "Event": "Sự kiện",
    "Detail": "Chi tiết",
    "No events yet.": "Chưa có sự kiện.",
    "Recent play log": "Nhật ký phát gần đây",
    "Scheduled": "Theo lịch",
    "Outcome": "Kết quả",
    "Reason": "Lý do",
    "Nothing played yet.": "Chưa phát lần nào.",
    "info": "thông tin",
    "warning": "cảnh báo",
    "error": "lỗi",
    "cpu_temp_c": "Nhiệt độ CPU (°C)",
    "load_1m": "Tải CPU (1 phút)",
    "mem_used_pct": "Bộ nhớ đã dùng (%)",
    "disk_free_mb": "Dung lượng trống (MB)",
    "uptime_s": "Thời gian chạy (giây)",
    "clock_trusted": "Đồng hồ tin cậy",
    "on_battery": "Đang dùng ắc quy",
    "cache_missing": "Âm thanh chưa tải về",
    "relays_on": "Rơ-le đang đóng",
    # outcomes and statuses
    "waiting": "đang chờ",
    "completed": "phát trọn vẹn",
    "interrupted": "bị ngắt",
    "failed": "lỗi",
    "missed": "bỏ lỡ",
    "skipped": "bỏ qua",
    "unreported": "chưa báo cáo",
    "offered": "được đề xuất",
    "scheduled": "đã lên lịch",
    "declined": "từ chối",
    "sent": "đã gửi",
    "accepted": "đã nhận",
    "done": "đã thực hiện",
    "rejected": "bị từ chối",
    "duplicate": "trùng lặp",
    "waiting for an answer": "đang chờ phản hồi",
    # levels and units
    "Normal": "Thông thường",
    "Priority": "Ưu tiên",
    "province": "tỉnh",
    "commune": "xã",
    "district": "huyện",
    "emergency": "khẩn cấp",
    # bulletins
    "Title": "Tiêu đề",
    "Message": "Nội dung",
    "Text read aloud (Vietnamese)": "Văn bản đọc thành giọng nói",
    "Upload an audio file (MP3, WAV, OGG)": "Tải lên tệp âm thanh (MP3, WAV, OGG)",
    "From the audio library": "Chọn từ thư viện âm thanh",
    "Targets": "Nơi phát",
    "Every box of the units": "Mọi cụm loa của các đơn vị",
    "These boxes": "Các cụm loa sau",
    "When": "Thời gian phát",
    "Once, at": "Một lần, lúc",
    "Repeating": "Lặp lại",
    "Repeat": "Lặp",
    "Custom rule (RRULE)": "Quy tắc tùy chỉnh (RRULE)",
    "First time": "Lần đầu",
    "Until (included)": "Đến hết ngày",
    "Times are the boxes' local time:": "Giờ theo múi giờ của cụm loa:",
    "Volume (0–100, empty: the box's own)": "Âm lượng (0–100, để trống: theo cụm loa)",
    "Create the bulletin": "Tạo bản tin",
    "Every day": "Hằng ngày",
    "Monday to Friday": "Thứ Hai đến Thứ Sáu",
    "Every week, on the first time's weekday": "Hằng tuần, vào thứ của lần đầu",
    "Custom rule (below)": "Quy tắc tùy chỉnh (bên dưới)",
    "levels.hint": LEVELS_HINT_VI,
    # schedule
    "Bulletin created": "Đã tạo bản tin",
    "Show": "Xem",
    "Offered by higher units": "Cấp trên đề xuất",
    "Nothing waits for a decision.": "Không có bản tin nào chờ quyết định.",
    "from": "từ",
    "Accept": "Nhận và lên lịch",
    "Decline": "Không nhận",
    "Bulletins for these boxes": "Bản tin của các cụm loa",
    "Colliding priority bulletins": "Bản tin ưu tiên trùng giờ",
    "collisions.hint": "Bản tin ưu tiên của cấp trên phát trùng giờ với bản tin ưu tiên của xã. Chọn bản tin "
    "phát trước: bản tin đó giữ giờ của mình, bản tin kia phát ngay khi bản tin đó kết thúc.",
    "First collides at": "Trùng giờ lần đầu lúc",
    "Plays first:": "Phát trước:",
    "follows it": "phát tiếp theo",
    "No order set: the earlier start plays first.": "Chưa chọn thứ tự: bản tin bắt đầu sớm hơn phát trước.",
    "Play first:": "Phát trước:",
    "No bulletin yet.": "Chưa có bản tin.",
    "By": "Theo",
    "at once": "phát ngay",
    # emergency and commands
    "Emergency broadcast": "Phát khẩn cấp",
    "emergency.hint": EMERGENCY_HINT_VI,
    "Confirm the emergency": "Xác nhận phát khẩn cấp",
    "It will play at once on": "Sẽ phát ngay trên",
    "boxes": "cụm loa",
    "Audio": "Âm thanh",
    "Yes, broadcast the emergency now": "Đồng ý, phát khẩn cấp ngay",
    "Cancel": "Hủy",
    "Command": "Lệnh",
    "Signed and sent": "Đã ký và gửi",
    "Stop it on these boxes": "Dừng phát trên các cụm loa này",
    "Stop what this box plays": "Dừng phát trên cụm loa này",
    "stop.hint": "Gửi nhầm? Lệnh dừng cắt ngay nơi đang phát; cụm loa nào còn đang tải âm thanh, hoặc "
    "đang chờ phát sau bản tin hiện tại, sẽ không phát nữa.",
    "Answer": "Phản hồi",
    # reports
    "Broadcast report": "Báo cáo phát thanh",
    "From": "Từ ngày",
    "To": "Đến ngày",
    "Download CSV": "Tải về CSV",
    "Minutes scheduled": "Số phút theo lịch",
    "Minutes played": "Số phút đã phát",
    "Ratio": "Tỷ lệ",
    "Reasons not played": "Lý do không phát",
    "No box in your units.": "Không có cụm loa nào.",
}


def translator(lang: str) -> Callable[[str], str]:
    """``t(phrase)``: the phrase in ``lang`` (English is the phrase itself)."""
    if lang != "vi":
        return lambda phrase: EN.get(phrase, phrase)
    return lambda phrase: VI.get(phrase, phrase)
